/**
 * The split benchmark (issue 14): `reshard split --all` of a loaded node
 * (16 → 32 slots by default) while 8 clients write through the router. Reports,
 * measured in this same run (the machine is shared and noisy):
 * - throughput: the slots' bytes split per second ÷ a raw `COPY … TO STDOUT |
 *   COPY … FROM STDIN` of the same tables on the same server (a split copies
 *   on its own node, so that is its raw ceiling);
 * - the client-seen pause of each split slot (the longest call on the slot
 *   that overlapped its freeze → switch) p50/p99/max, beside the coordinator's.
 *
 *   npm run bench:split                 → bench/results/split.json
 *   BENCH_SPLIT_USERS=200000            a smaller run; BENCH_OUTPUT=/tmp/x.json writes there instead
 */
import { fork, execFileSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addNode } from '../src/admin/addNode.js';
import { createShardedTable } from '../src/admin/createShardedTable.js';
import { initCluster } from '../src/admin/initCluster.js';
import { splitAllSlots } from '../src/admin/splitAllSlots.js';
import { verifyCluster } from '../src/admin/verifyCluster.js';
import { CHECK_TABLES } from '../src/checker/checkTables.js';
import { MoveTimeline } from '../src/checker/moveTimeline.js';
import { verifyWorkload } from '../src/checker/verifyWorkload.js';
import { wallClockMs } from '../src/checker/workload.js';
import { formatBytes } from '../src/core/bytes.js';
import type { ConnectionSettings } from '../src/core/connection.js';
import { percentile } from '../src/core/percentile.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../src/local/localServer.js';
import type { ClusterAccess } from '../src/plumbing/clusterAccess.js';
import { noPasswords } from '../src/plumbing/connectNode.js';
import type { MigrationEvent } from '../src/plumbing/migrationEvents.js';
import { sleep } from '../src/plumbing/waitFor.js';
import { deserializeLog, type SerializedLog } from './workloadProcess.js';
import { log, pipeCopy, USERS_COLUMNS, usersRowsSql, withClient } from './benchSupport.js';

const USERS = Number(process.env['BENCH_SPLIT_USERS'] ?? 1_000_000);
const SLOTS = Number(process.env['BENCH_SPLIT_SLOTS'] ?? 16);
const CLIENTS = 8;
/** Paced like onlineBench's writers (about 400 statements/s in all). */
const THINK_MS = 20;
const BASELINE_SECONDS = 5;

/** As onlineBench's users: distinct emails, timestamps out of key order, 160-byte texts; a secondary index. */
const USERS_ROWS_SQL = usersRowsSql(USERS);

/** Bytes on disk (heap, indexes, TOAST) of every leaf of the sharded tables. */
async function leafBytes(connection: ConnectionSettings): Promise<number> {
  return withClient(connection, async (client) => Number((await client.query<{ b: string }>(
    `SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::text AS b FROM pg_inherits WHERE inhparent IN (${['users', ...CHECK_TABLES.map((table) => table.name)].map((name) => `'${name}'::regclass`).join(', ')})`)).rows[0]!.b));
}

/** Raw baseline on the same server: users piped COPY TO STDOUT | COPY FROM STDIN into a plain table with the same columns and indexes. */
async function rawCopyBaseline(connection: ConnectionSettings): Promise<{ bytes: number; seconds: number }> {
  const bytes = await withClient(connection, async (client) => Number((await client.query<{ b: string }>(
    "SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'users'::regclass)::text AS b")).rows[0]!.b));
  await withClient(connection, async (client) => {
    for (const statement of [`CREATE TABLE raw_users (${USERS_COLUMNS})`, 'CREATE INDEX raw_users_email ON raw_users (email)', 'CHECKPOINT']) await client.query(statement);
  });
  const started = performance.now();
  await pipeCopy(connection, connection, 'COPY (SELECT * FROM users) TO STDOUT', 'COPY raw_users FROM STDIN');
  const seconds = (performance.now() - started) / 1000;
  await withClient(connection, async (client) => {
    await client.query('DROP TABLE raw_users');
    await client.query('CHECKPOINT');
  });
  return { bytes, seconds };
}

function resultFile(): string {
  return process.env['BENCH_OUTPUT'] ?? fileURLToPath(new URL('../../bench/results/split.json', import.meta.url));
}

async function main(): Promise<void> {
  try {
    execFileSync('psql', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('psql is needed for the raw baseline (apt-get install postgresql-client)');
  }
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-bench-split-'));
  let server: LocalServer | undefined;
  let clients: ReturnType<typeof fork> | undefined;
  try {
    log(`Starting a durable PostgreSQL server; ${USERS} users over ${SLOTS} slots …`);
    server = await startLocalServer({ name: 'n1', baseDir, durable: true, settings: { shared_buffers: '512MB', max_wal_size: '8GB' } });
    const connection = server.connection;
    const access: ClusterAccess = { catalog: connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: server.name, connection });
    for (const table of [{ name: 'users', shardKey: ['id'], definition: USERS_COLUMNS }, ...CHECK_TABLES]) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
    const loadStarted = performance.now();
    await withClient(connection, async (client) => {
      await client.query(`INSERT INTO users (id, email, created_at, profile) ${USERS_ROWS_SQL}`);
      for (const statement of ['CREATE INDEX users_email ON users (email)', 'VACUUM ANALYZE users', 'CHECKPOINT']) await client.query(statement);
    });
    log(`Loaded ${USERS} users in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s.`);

    log('Raw baseline on the same server: psql COPY TO STDOUT | COPY FROM STDIN …');
    const raw = await rawCopyBaseline(connection);
    const rawBytesPerSec = raw.bytes / raw.seconds;
    log(`  ${formatBytes(raw.bytes)} in ${raw.seconds.toFixed(1)} s = ${formatBytes(rawBytesPerSec)}/s`);

    clients = fork(fileURLToPath(new URL('./workloadProcess.js', import.meta.url)), [], {
      env: { ...process.env, RESHARD_WORKLOAD: JSON.stringify({ catalog: access.catalog, clients: CLIENTS, counters: 1024, thinkMs: THINK_MS, slots: SLOTS }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const child = clients;
    const messages = new EventEmitter();
    child.on('message', (message: { ready?: boolean; log?: SerializedLog }) => {
      if (message.ready) messages.emit('ready');
      if (message.log) messages.emit('log', message.log);
    });
    await once(messages, 'ready');
    const timeline = new MoveTimeline(wallClockMs);
    let hotSent = '';
    const emit = (event: MigrationEvent): void => {
      timeline.handle(event);
      // The slot being split is where the clients write most (as onlineBench's moving slots).
      const hot = JSON.stringify(timeline.movingSlots().sort((a, b) => a - b));
      if (hot !== hotSent) {
        hotSent = hot;
        child.send({ hot: JSON.parse(hot) as number[] });
      }
    };
    log(`${CLIENTS} clients (own process) writing through a router; ${BASELINE_SECONDS} s of baseline …`);
    await sleep(BASELINE_SECONDS * 1000);

    const bytes = await leafBytes(connection);
    log(`split --all: ${SLOTS} → ${2 * SLOTS} slots, ${formatBytes(bytes)} …`);
    const splitFrom = wallClockMs();
    const result = await splitAllSlots(access, { emit });
    const splitSeconds = (wallClockMs() - splitFrom) / 1000;
    await sleep(1000);
    const logged = once(messages, 'log');
    child.send({ stop: true });
    const workloadLog = deserializeLog((await logged)[0] as SerializedLog);
    const writes = await verifyWorkload(access, workloadLog);
    const verified = await verifyCluster(access);

    const pauses = timeline.pausesMs(workloadLog.samples);
    const splitBytesPerSec = bytes / splitSeconds;
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, memory_bytes: totalmem(), note: 'shared by several processes; ratios are taken within this run' },
      users: USERS, slots_before: SLOTS, slots_after: result.slotsAfter, state: result.state,
      clients: CLIENTS, think_ms: THINK_MS,
      rows_split: result.rows,
      bytes_split: bytes,
      split_seconds: Math.round(splitSeconds * 100) / 100,
      split_bytes_per_sec: Math.round(splitBytesPerSec),
      raw_copy_bytes: raw.bytes,
      raw_copy_seconds: Math.round(raw.seconds * 100) / 100,
      raw_copy_bytes_per_sec: Math.round(rawBytesPerSec),
      throughput_ratio_to_raw_copy: Math.round((splitBytesPerSec / rawBytesPerSec) * 1000) / 1000,
      pause_ms_p50: Math.round(percentile(pauses, 0.5)),
      pause_ms_p99: Math.round(percentile(pauses, 0.99)),
      pause_ms_max: pauses.length ? Math.round(Math.max(...pauses)) : 0,
      pause_slots_observed: pauses.length,
      coordinator_pause_ms_p50: Math.round(percentile(result.pausesMs, 0.5)),
      coordinator_pause_ms_p99: Math.round(percentile(result.pausesMs, 0.99)),
      coordinator_pause_ms_max: result.pausesMs.length ? Math.round(Math.max(...result.pausesMs)) : 0,
      writes_acked: { inserts: writes.insertsAcked, increments: writes.incrementsAcked, deletes: writes.deletesAcked },
      write_violations: writes.violations.length,
      client_errors: workloadLog.errors.length,
      verify_problems: verified.problems.length,
    };
    const ok = result.state === 'completed' && writes.violations.length === 0 && verified.problems.length === 0;
    if (!ok) {
      log(`The split ended ${result.state}${result.error ? `: ${result.error}` : ''}; violations: ${writes.violations.slice(0, 3).join('; ')}; verify: ${verified.problems.slice(0, 3).join('; ')}`);
      process.exitCode = 1;
    }
    if (ok || process.env['BENCH_OUTPUT']) {
      const file = resultFile();
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
      log(`Wrote ${file}`);
    }
    console.log(JSON.stringify(report, null, 2));
  } finally {
    clients?.kill();
    await server?.stop('fast').catch(() => {});
    removeServerDirectory(baseDir);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
