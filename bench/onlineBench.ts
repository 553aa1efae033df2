/**
 * The online rebalance benchmark: 2M users (id bigint, 100-byte payload) and
 * 2M colocated orders over 3 nodes, grown to 4 while 8 clients write through
 * the router. Everything is reported as ratios measured in this same run
 * (the machine is shared and noisy), and written to bench/results/online.json.
 *
 *   npm run bench            (BENCH_USERS=200000 for a quick run)
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { addNode } from '../src/admin/addNode.js';
import { createShardedTable } from '../src/admin/createShardedTable.js';
import { initCluster } from '../src/admin/initCluster.js';
import { prepareRebalance } from '../src/admin/rebalance.js';
import { verifyCluster } from '../src/admin/verifyCluster.js';
import { CHECK_TABLES } from '../src/checker/checkTables.js';
import { MoveTimeline } from '../src/checker/moveTimeline.js';
import { verifyWorkload } from '../src/checker/verifyWorkload.js';
import { wallClockMs, type OperationSample } from '../src/checker/workload.js';
import type { MigrationEvent } from '../src/plumbing/migrationEvents.js';
import { deserializeLog, type SerializedLog } from './workloadProcess.js';
import { readSlotMap } from '../src/catalog/slotMap.js';
import { readFreezePhases, summarizeFreezePhases } from '../src/catalog/freezePhases.js';
import type { ClusterAccess } from '../src/plumbing/clusterAccess.js';
import { withCatalog } from '../src/plumbing/clusterAccess.js';
import { runMigration } from '../src/coordinator/runMigration.js';
import { sleep } from '../src/plumbing/waitFor.js';
import { describeConnection, type ConnectionSettings } from '../src/core/connection.js';
import { formatBytes } from '../src/core/bytes.js';
import { percentile } from '../src/core/percentile.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../src/local/localServer.js';
import { noPasswords } from '../src/plumbing/connectNode.js';

const USERS = Number(process.env['BENCH_USERS'] ?? 2_000_000);
const SLOTS = Number(process.env['BENCH_SLOTS'] ?? 256);
const CLIENTS = 8;
/** Paced like the Citus anchor's writer (about 400 statements/s in all), not a CPU hog. */
const THINK_MS = 20;
const BASELINE_SECONDS = 10;
/** Batches the new node takes at once: copies of some overlap the cutovers and cleanup of others. */
const TARGET_CONCURRENCY = Number(process.env['BENCH_TARGET_CONCURRENCY'] ?? 4);

const BENCH_TABLES = [
  { name: 'users', shardKey: ['id'], definition: 'id bigint NOT NULL, payload text NOT NULL, PRIMARY KEY (id)' },
  { name: 'orders', shardKey: ['user_id'], definition: 'user_id bigint NOT NULL, id bigint NOT NULL, amount numeric NOT NULL, PRIMARY KEY (user_id, id)', colocateWith: 'users' },
] as const;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function withClient<T>(connection: ConnectionSettings, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...connection });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Loads each node's share server-side: the slot is computed in SQL exactly as PostgreSQL routes (an insert for a slot the node does not own would fail). */
async function loadNode(connection: ConnectionSettings, ownedSlots: number[]): Promise<void> {
  const slotOfSql = `(((hashint8extended(g, 8816678312871386365)::numeric + 18446744073709551616 + 5305509591434766563) % 18446744073709551616) % ${SLOTS})::int`;
  await withClient(connection, async (client) => {
    await client.query(`INSERT INTO users (id, payload) SELECT g, rpad(md5(g::text), 100, 'x') FROM generate_series(1, ${USERS}) g WHERE ${slotOfSql} = ANY ($1::int[])`, [ownedSlots]);
    await client.query(`INSERT INTO orders (user_id, id, amount) SELECT g, g * 10, (g % 1000) + 0.99 FROM generate_series(1, ${USERS}) g WHERE ${slotOfSql} = ANY ($1::int[])`, [ownedSlots]);
    for (const statement of ['VACUUM ANALYZE users', 'VACUUM ANALYZE orders', 'CHECKPOINT']) await client.query(statement);
  });
}

function psqlAvailable(): boolean {
  try {
    execFileSync('psql', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function pipe(source: ConnectionSettings, target: ConnectionSettings, fromSql: string, toSql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = (c: ConnectionSettings, sql: string): string[] => ['-X', '-q', '-h', c.host, '-p', String(c.port), '-U', c.user, '-d', c.database, '-c', sql];
    const reader = spawn('psql', args(source, fromSql), { stdio: ['ignore', 'pipe', 'inherit'] });
    const writer = spawn('psql', args(target, toSql), { stdio: ['pipe', 'ignore', 'inherit'] });
    reader.stdout.pipe(writer.stdin);
    let done = 0;
    const finish = (code: number | null): void => {
      if (code !== 0) reject(new Error(`psql exited with ${code}`));
      else if (++done === 2) resolve();
    };
    reader.on('exit', finish);
    writer.on('exit', finish);
  });
}

/** Raw baseline: n1's users and orders piped COPY TO STDOUT | COPY FROM STDIN into plain tables (with their PK) on n4. */
async function rawCopyBaseline(source: ConnectionSettings, target: ConnectionSettings): Promise<{ bytes: number; seconds: number }> {
  const bytes = await withClient(source, async (client) => Number((await client.query<{ b: string }>(
    `SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent IN ('users'::regclass, 'orders'::regclass))::text AS b`)).rows[0]!.b));
  await withClient(target, (client) => client.query(`CREATE TABLE raw_users (id bigint PRIMARY KEY, payload text NOT NULL);
    CREATE TABLE raw_orders (user_id bigint NOT NULL, id bigint NOT NULL, amount numeric NOT NULL, PRIMARY KEY (user_id, id)); CHECKPOINT`));
  const started = performance.now();
  if (psqlAvailable()) {
    await pipe(source, target, 'COPY (SELECT * FROM users) TO STDOUT', 'COPY raw_users FROM STDIN');
    await pipe(source, target, 'COPY (SELECT * FROM orders) TO STDOUT', 'COPY raw_orders FROM STDIN');
  } else {
    throw new Error('psql is needed for the raw baseline (apt-get install postgresql-client)');
  }
  const seconds = (performance.now() - started) / 1000;
  await withClient(target, async (client) => {
    await client.query('DROP TABLE raw_users, raw_orders');
    await client.query('CHECKPOINT');
  });
  return { bytes, seconds };
}

function latencies(samples: readonly OperationSample[], fromMs: number, toMs: number, excludeSlots: ReadonlySet<number>): number[] {
  return samples.filter((s) => s.outcome === 'ok' && s.startMs >= fromMs && s.startMs <= toMs && !excludeSlots.has(s.slot)).map((s) => s.latencyMs);
}

async function main(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-bench-'));
  const servers: LocalServer[] = [];
  let childProcess: ChildProcess | undefined;
  try {
    log(`Starting 4 durable PostgreSQL servers; ${USERS} users + ${USERS} orders, ${SLOTS} slots …`);
    servers.push(...await Promise.all([1, 2, 3, 4].map((i) => startLocalServer({ name: `n${i}`, baseDir, durable: true, settings: { shared_buffers: '512MB', max_wal_size: '8GB' } }))));
    const access: ClusterAccess = { catalog: servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (const server of servers.slice(0, 3)) await addNode(access, { name: server.name, connection: server.connection });
    for (const table of [...BENCH_TABLES, ...CHECK_TABLES]) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
    const slotMap = await withCatalog(access, readSlotMap);
    const loadStarted = performance.now();
    await Promise.all(servers.slice(0, 3).map((server) => loadNode(server.connection, slotMap.owners.flatMap((owner, slot) => (owner === server.name ? [slot] : [])))));
    const loaded = await verifyCluster(access);
    if (!loaded.ok) throw new Error(`load left problems: ${loaded.problems.slice(0, 3).join('; ')}`);
    log(`Loaded ${loaded.rowsTotal} rows in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s.`);

    log('Raw baseline: psql COPY TO STDOUT | COPY FROM STDIN, n1 → n4 …');
    const raw = await rawCopyBaseline(servers[0]!.connection, servers[3]!.connection);
    const rawBytesPerSec = raw.bytes / raw.seconds;
    log(`  ${formatBytes(raw.bytes)} in ${raw.seconds.toFixed(1)} s = ${formatBytes(rawBytesPerSec)}/s`);

    await addNode(access, { name: 'n4', connection: servers[3]!.connection, concurrencyMax: TARGET_CONCURRENCY });
    // The clients run in their own process, as an application would: the coordinator's
    // COPY streams do not share their event loop.
    const clients = fork(fileURLToPath(new URL('./workloadProcess.js', import.meta.url)), [], {
      env: { ...process.env, RESHARD_WORKLOAD: JSON.stringify({ catalog: access.catalog, clients: CLIENTS, counters: 1024, thinkMs: THINK_MS, slots: SLOTS }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    childProcess = clients;
    const messages = new EventEmitter();
    clients.on('message', (message: { ready?: boolean; log?: SerializedLog }) => {
      if (message.ready) messages.emit('ready');
      if (message.log) messages.emit('log', message.log);
    });
    await once(messages, 'ready');
    const timeline = new MoveTimeline(wallClockMs);
    let hotSent = '';
    const emit = (event: MigrationEvent): void => {
      timeline.handle(event);
      const hot = JSON.stringify(timeline.movingSlots().sort((a, b) => a - b));
      if (hot !== hotSent) {
        hotSent = hot;
        clients.send({ hot: JSON.parse(hot) as number[] });
      }
    };
    const baselineFrom = wallClockMs();
    log(`${CLIENTS} clients (own process) writing through a router; ${BASELINE_SECONDS} s of baseline latency …`);
    await sleep(BASELINE_SECONDS * 1000);
    const baselineTo = wallClockMs();

    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    const movedSlots = new Set(prepared.plan.moves.map((move) => move.slot));
    log(`Rebalance: ${prepared.plan.slotsMoved} slots, ${formatBytes(prepared.plan.bytesMoved)} of ${formatBytes(prepared.plan.bytesTotal)} …`);
    const rebalanceFrom = wallClockMs();
    const summary = await runMigration(prepared.migrationId!, { access, moveConcurrencyMax: 4, emit });
    const rebalanceTo = wallClockMs();
    await sleep(1000);
    const logged = once(messages, 'log');
    clients.send({ stop: true });
    const workloadLog = deserializeLog((await logged)[0] as SerializedLog);
    const writes = await verifyWorkload(access, workloadLog);

    const rebalanceBytesPerSec = prepared.plan.bytesMoved / summary.seconds;
    // Every slot is served by its new owner from the last switch on; what follows is dropping the old copies.
    const lastSwitchMs = Math.max(...timeline.windows().map((window) => window.toMs));
    const switchedSeconds = (lastSwitchMs - rebalanceFrom) / 1000;
    // Where the time went: each step's total duration over all moves, from the journal.
    const stepSeconds = await withCatalog(access, async (catalog) => Object.fromEntries((await catalog.query<{ step: string; seconds: number }>(
      `SELECT b.step, round(sum(extract(epoch FROM d.at - b.at))::numeric, 2)::float8 AS seconds
         FROM reshard.journal b JOIN LATERAL (SELECT at FROM reshard.journal d WHERE d.migration_id = b.migration_id AND d.slot = b.slot
                AND d.step = b.step AND d.action = 'done' AND d.id > b.id ORDER BY d.id LIMIT 1) d ON true
        WHERE b.migration_id = $1 AND b.action = 'begin' GROUP BY b.step ORDER BY 2 DESC`, [prepared.migrationId])).rows.map((row) => [row.step, row.seconds])));
    // Where the coordinator's freeze went: each phase's p50 and max over the moves, from the journal.
    const pausePhases = summarizeFreezePhases((await withCatalog(access, (catalog) => readFreezePhases(catalog, prepared.migrationId!))).values());
    const pauses = timeline.pausesMs(workloadLog.samples);
    // Per cutover with a call held across it: how long after the coordinator saw the switch commit the last such call ended
    // (the router's share of the client-seen pause: NOTIFY, re-read of the map, the call on the new owner).
    const releaseLags = timeline.windows().flatMap((window) => {
      const ends = workloadLog.samples.filter((sample) => sample.slot === window.slot && sample.startMs <= window.toMs && sample.startMs + sample.latencyMs >= window.fromMs)
        .map((sample) => sample.startMs + sample.latencyMs - window.toMs);
      return ends.length ? [Math.max(...ends)] : [];
    });
    const otherBefore = latencies(workloadLog.samples, baselineFrom, baselineTo, movedSlots);
    const otherDuring = latencies(workloadLog.samples, rebalanceFrom, rebalanceTo, movedSlots);
    const serverVersion = await withClient(servers[0]!.connection, async (client) => (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v);
    const result = {
      benchmark: 'online rebalance 3 → 4 nodes with live writes through the router',
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30), postgres: serverVersion, node: process.version, note: 'shared 2-core machine: compare ratios within one run' },
      users: USERS,
      orders: USERS,
      slots: SLOTS,
      data_bytes_total: prepared.plan.bytesTotal,
      bytes_moved: prepared.plan.bytesMoved,
      slots_moved: summary.slotsMoved,
      moved_fraction: summary.slotsMoved / SLOTS,
      raw_copy_bytes: raw.bytes,
      raw_copy_seconds: raw.seconds,
      raw_copy_bytes_per_sec: rawBytesPerSec,
      rebalance_seconds: summary.seconds,
      rebalance_bytes_per_sec: rebalanceBytesPerSec,
      throughput_ratio_to_raw_copy: rebalanceBytesPerSec / rawBytesPerSec,
      seconds_until_all_switched: switchedSeconds,
      throughput_ratio_until_all_switched: prepared.plan.bytesMoved / switchedSeconds / rawBytesPerSec,
      cleanup_seconds_after_last_switch: summary.seconds - switchedSeconds,
      pause_ms_p50: percentile(pauses, 0.5),
      pause_ms_p99: percentile(pauses, 0.99),
      pause_ms_max: pauses.length ? Math.max(...pauses) : 0,
      pause_moves_observed: pauses.length,
      release_after_switch_ms_p50: percentile(releaseLags, 0.5),
      release_after_switch_ms_max: releaseLags.length ? Math.max(...releaseLags) : 0,
      coordinator_pause_ms_p50: percentile(summary.pausesMs, 0.5),
      coordinator_pause_ms_max: summary.pausesMs.length ? Math.max(...summary.pausesMs) : 0,
      other_slots_p99_before_ms: percentile(otherBefore, 0.99),
      other_slots_p99_during_ms: percentile(otherDuring, 0.99),
      other_slots_p99_ratio: percentile(otherDuring, 0.99) / Math.max(0.001, percentile(otherBefore, 0.99)),
      writes_during: workloadLog.samples.filter((s) => s.startMs >= rebalanceFrom && s.startMs <= rebalanceTo).length,
      writes_total: workloadLog.samples.length,
      client_errors: workloadLog.errors.length,
      client_error_samples: workloadLog.errors.slice(0, 5),
      lost_writes: writes.violations.length,
      migration_state: summary.state,
      step_seconds_summed_over_moves: stepSeconds,
      coordinator_pause_phases_ms: pausePhases,
      catalog: describeConnection(access.catalog),
    };
    mkdirSync(new URL('../../bench/results/', import.meta.url), { recursive: true });
    writeFileSync(new URL('../../bench/results/online.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result, null, 2));
    if (writes.violations.length) log(`violations: ${writes.violations.slice(0, 5).join('; ')}`);
  } finally {
    childProcess?.kill();
    await Promise.allSettled(servers.map((server) => server.stop('fast')));
    removeServerDirectory(baseDir);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
