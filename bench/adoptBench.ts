/**
 * The adoption benchmark: a plain table of BENCH_ROWS rows (default 1M; a
 * text column of ~120 bytes) on a separate server adopted into 3 nodes while
 * 8 clients write through the router's AdoptingTable (20 ms think time).
 * Reported in the same run, as the online benchmark does: the raw baseline
 * (`COPY … TO STDOUT | COPY … FROM STDIN`, binary, the whole table into one
 * plain table on a node) against the adoption's copy (its stream step), and
 * the write pause clients saw: the latency of calls issued from the freeze
 * to the switch (p50 / p99 / max), beside that of the other calls.
 *
 *   tsc -p tsconfig.bench.json && node dist-bench/bench/adoptBench.js   → bench/results/adopt.json
 *   BENCH_ROWS=200000 BENCH_OUTPUT=/tmp/adopt.json                       a smaller run
 *   BENCH_SOURCE_OTHER_WAL_MB_PER_S=4                                    the source also busy elsewhere:
 *     another table of its database written at that rate while the adoption runs (WAL the change
 *     stream must decode past), recorded as `source_other_wal_mb_per_s`
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { addNode } from '../src/admin/addNode.js';
import { adoptTable } from '../src/admin/adoptTable.js';
import { initCluster } from '../src/admin/initCluster.js';
import { percentile } from '../src/core/percentile.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../src/local/localServer.js';
import { copyRelation } from '../src/node/copySlot.js';
import { noPasswords } from '../src/plumbing/connectNode.js';
import { AdoptingTable, Router } from '../src/router/index.js';
import { cpuPressure } from './processCpu.js';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 1_000_000);
const SLOTS = Number(process.env['BENCH_SLOTS'] ?? 256);
const CLIENTS = 8;
const THINK_MS = 20;
/** WAL per second written to another table of the source's database during the adoption (0: none). */
const SOURCE_OTHER_WAL_MB_PER_S = Number(process.env['BENCH_SOURCE_OTHER_WAL_MB_PER_S'] ?? 0);
/** Rows of ~1 KB per batch of that writer (one batch every 100 ms). */
const OTHER_ROWS_PER_BATCH = Math.round(SOURCE_OTHER_WAL_MB_PER_S * 1024 * 1024 / 10 / 1100);
const OUTPUT = process.env['BENCH_OUTPUT'] ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'adopt.json');

async function sql(server: LocalServer, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ ...server.connection });
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}

interface Call { startedMs: number; ms: number }

async function main(): Promise<void> {
  const pressureBefore = cpuPressure();
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-adopt-bench-'));
  const servers: LocalServer[] = [];
  try {
    servers.push(...await Promise.all([1, 2, 3, 4].map((i) => startLocalServer({ name: `a${i}`, baseDir, durable: true, settings: { shared_buffers: '256MB', max_wal_size: '4GB' } }))));
    const [n1, , , source] = servers as [LocalServer, LocalServer, LocalServer, LocalServer];
    const table = 'accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text NOT NULL)';
    await sql(source, `CREATE TABLE ${table}`);
    await sql(source, `INSERT INTO accounts SELECT g, 0, repeat(md5(g::text), 4) FROM generate_series(1, ${ROWS}) g`);
    await sql(source, 'VACUUM ANALYZE accounts');
    // The bulk load's dirty pages written out now, not during the baseline's copy.
    await sql(source, 'CHECKPOINT');

    // The raw baseline: the whole table, one binary COPY stream, into a plain table of the same name on a node's server
    // (another database). Taken before the adoption and again after it (the old table, kept under its new name), so that
    // a neighbour's load on this shared machine weighs on the baseline as it does on the adoption.
    const rawCopy = async (sourceTable: string): Promise<{ seconds: number; bytes: number; rows: number }> => {
      await sql(n1, 'CREATE DATABASE rawcopy');
      const rawTarget = new pg.Client({ ...n1.connection, database: 'rawcopy' });
      const rawSource = new pg.Client(source.connection);
      await Promise.all([rawTarget.connect(), rawSource.connect()]);
      await rawTarget.query(`CREATE TABLE ${table.replace('accounts', sourceTable)}`);
      const rawStartedMs = performance.now();
      const copied = await copyRelation(rawSource, rawTarget, sourceTable, () => {});
      const seconds = (performance.now() - rawStartedMs) / 1000;
      await Promise.all([rawTarget.end(), rawSource.end()]);
      await sql(n1, 'DROP DATABASE rawcopy');
      return { seconds, ...copied };
    };
    const rawBefore = await rawCopy('accounts');

    const access = { catalog: n1.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (const [index, server] of servers.slice(0, 3).entries()) await addNode(access, { name: `n${index + 1}`, connection: server.connection });

    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt bench', holdTimeoutMs: 60_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'accounts', holdTimeoutMs: 120_000 });
    const calls: Call[] = [];
    let running = true;
    const clients: Promise<void>[] = [];
    const startClients = (): void => {
      for (let client = 0; client < CLIENTS; client++) {
        clients.push((async () => {
          let next = 0;
          while (running) {
            const id = 10_000_000_000 + client * 100_000_000 + next++;
            const startedMs = performance.now();
            await adopting.query(id, 'INSERT INTO accounts (id, note) VALUES ($1, $2)', [id, 'bench']);
            calls.push({ startedMs, ms: performance.now() - startedMs });
            const key = 1 + Math.floor(Math.random() * ROWS);
            const updateStartedMs = performance.now();
            await adopting.query(key, 'UPDATE accounts SET balance = balance + 1 WHERE id = $1', [key]);
            calls.push({ startedMs: updateStartedMs, ms: performance.now() - updateStartedMs });
            await new Promise((resolve) => setTimeout(resolve, THINK_MS));
          }
        })());
      }
    };
    const stepMs = new Map<string, { begin?: number; done?: number }>();
    const adoptStartedMs = performance.now();
    const adoption = adoptTable(access, {
      name: 'accounts', from: [`postgres://${source.connection.user}@${source.connection.host}:${source.connection.port}/${source.connection.database}`], keyColumn: 'id',
      emit: (event) => {
        const entry = stepMs.get(event.step) ?? {};
        if (event.action === 'begin') entry.begin = performance.now();
        if (event.action === 'done') entry.done = performance.now();
        stepMs.set(event.step, entry);
      },
    });
    // The clients start once the router knows the table is being adopted (it routes it to the old table until the switch).
    for (let waitedMs = 0; adopting.state !== 'streaming' && waitedMs < 60_000; waitedMs += 5) await new Promise((resolve) => setTimeout(resolve, 5));
    startClients();
    // The source's other work: a table the adoption does not read, written at a steady rate.
    const otherWriter = SOURCE_OTHER_WAL_MB_PER_S > 0 ? (async () => {
      const writer = new pg.Client(source.connection);
      await writer.connect();
      try {
        await writer.query('CREATE TABLE IF NOT EXISTS source_activity (id bigserial PRIMARY KEY, body text NOT NULL)');
        while (running) {
          const startedMs = performance.now();
          await writer.query('INSERT INTO source_activity (body) SELECT repeat(md5(g::text), 32) FROM generate_series(1, $1) g', [OTHER_ROWS_PER_BATCH]);
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, 100 - (performance.now() - startedMs))));
        }
      } finally {
        await writer.end();
      }
    })() : Promise.resolve();
    clients.push(otherWriter);
    // The write pause as the router sees it: from its first look at the cutover state (it holds calls from then on) to the switch.
    let pausedFrom: number | undefined;
    let pausedTo: number | undefined;
    const pauseWatch = setInterval(() => {
      if (pausedFrom === undefined && adopting.state === 'cutover') pausedFrom = performance.now();
      if (pausedFrom !== undefined && pausedTo === undefined && adopting.state !== 'cutover') pausedTo = performance.now();
    }, 1);
    // A failed adoption stops the clients before the servers go (else a client's lost connection hides its error).
    const result = await adoption.finally(() => clearInterval(pauseWatch)).catch(async (error: unknown) => {
      running = false;
      await Promise.allSettled(clients);
      throw error;
    });
    const adoptSeconds = (performance.now() - adoptStartedMs) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    running = false;
    await Promise.all(clients);
    await adopting.close();
    await router.close();
    // A separate source keeps the old table under its name (fenced; read as before); a node source renames it.
    const kept = (await sql(source, 'SELECT to_regclass($1) IS NOT NULL AS renamed', [result.keptName])).rows[0].renamed ? result.keptName : 'accounts';
    const rawAfter = await rawCopy(kept);
    const rawSeconds = (rawBefore.seconds + rawAfter.seconds) / 2;
    const journal = await sql(n1, `SELECT step, detail FROM reshard.journal WHERE migration_id = $1 AND action = 'done' AND detail IS NOT NULL ORDER BY id`, [result.migrationId]);

    const stream = stepMs.get('stream')!;
    const copySeconds = (stream.done! - stream.begin!) / 1000;
    const cutoverFrom = stepMs.get('freeze')!.begin!;
    const cutoverTo = stepMs.get('switch')!.done!;
    const inCutover = calls.filter((call) => call.startedMs + call.ms >= cutoverFrom && call.startedMs <= cutoverTo).map((call) => call.ms);
    const outside = calls.filter((call) => call.startedMs + call.ms < cutoverFrom || call.startedMs > cutoverTo).map((call) => call.ms);
    const pauseFrom = pausedFrom ?? cutoverFrom;
    const pauseTo = pausedTo ?? cutoverTo;
    const inPause = calls.filter((call) => call.startedMs + call.ms >= pauseFrom && call.startedMs <= pauseTo).map((call) => call.ms);
    const stats = (values: number[]): { count: number; p50: number; p99: number; max: number } => ({
      count: values.length, p50: Math.round(percentile(values, 0.5) * 10) / 10, p99: Math.round(percentile(values, 0.99) * 10) / 10, max: Math.round(Math.max(0, ...values) * 10) / 10,
    });
    const postgres = String((await sql(source, "SELECT current_setting('server_version') AS v")).rows[0]!['v']);
    const report = {
      // The server version (the change stream's costs differ: PostgreSQL 16+ logs running transactions on demand) and the
      // machine's CPU pressure before our servers started (neighbours) and at the end.
      postgres, source_other_wal_mb_per_s: SOURCE_OTHER_WAL_MB_PER_S, cpu_pressure_before_run: pressureBefore ?? null, cpu_pressure_at_end: cpuPressure() ?? null,
      rows: ROWS, slots: SLOTS, clients: CLIENTS, think_ms: THINK_MS, adopted_rows: result.rows,
      raw_copy: {
        seconds: Math.round(rawSeconds * 100) / 100, before_seconds: Math.round(rawBefore.seconds * 100) / 100, after_seconds: Math.round(rawAfter.seconds * 100) / 100,
        bytes: rawBefore.bytes, rows: rawBefore.rows,
      },
      adoption: {
        seconds: Math.round(adoptSeconds * 100) / 100,
        stream_step_seconds: Math.round(copySeconds * 100) / 100,
        steps_ms: Object.fromEntries([...stepMs].map(([step, times]) => [step, Math.round((times.done ?? times.begin!) - times.begin!)])),
        // What each step journaled of its own parts (copy, key build, catch-up, row sums, fence …).
        step_facts: Object.fromEntries(journal.rows.map((row: { step: string; detail: Record<string, unknown> }) => [row.step, row.detail])),
      },
      // The whole adoption, start to end, against the same baseline.
      adoption_vs_raw: Math.round((rawSeconds / adoptSeconds) * 100) / 100,
      copy_throughput_vs_raw: Math.round((rawSeconds / copySeconds) * 100) / 100,
      cutover_window_ms: Math.round(cutoverTo - cutoverFrom),
      // The freeze step starts the row sums (scans, writes go on) before the pause: the pause is the router's hold.
      pause_window_ms: Math.round(pauseTo - pauseFrom),
      client_latency_ms: { during_cutover: stats(inCutover), during_pause: stats(inPause), otherwise: stats(outside) },
      // Where the pause goes: each step's begin and done, and each held call's start and end, in ms from the router's first look at the cutover.
      pause_timeline_ms: {
        steps: Object.fromEntries([...stepMs].filter(([, times]) => (times.done ?? 0) >= pauseFrom - 50)
          .map(([step, times]) => [step, [Math.round(times.begin! - pauseFrom), Math.round(times.done! - pauseFrom)]])),
        router_switched: Math.round(pauseTo - pauseFrom),
        calls: calls.filter((call) => call.startedMs + call.ms >= pauseFrom && call.startedMs <= pauseTo)
          .map((call) => [Math.round(call.startedMs - pauseFrom), Math.round(call.startedMs + call.ms - pauseFrom)]),
      },
    };
    mkdirSync(dirname(OUTPUT), { recursive: true });
    writeFileSync(OUTPUT, JSON.stringify(report, null, 2) + '\n');
    console.log(JSON.stringify(report, null, 2));
  } finally {
    for (const server of servers) await server.stop().catch(() => {});
    removeServerDirectory(baseDir);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
