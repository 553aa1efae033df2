/**
 * The latency guard benchmark: one table of BENCH_ROWS rows (default 1M; a
 * text column of ~130 bytes) on 2 nodes, grown to 3 while 8 clients read and
 * write through the router (which reports its load every second). In one run,
 * the same rebalance twice — without a latency bound, then (after rolling it
 * back) with `--max-latency-impact` BENCH_IMPACT (default 1.2) — each after
 * a baseline period of the same traffic. Reported per run, as measured by the
 * clients: the p99 of calls on the slots the migration does not move, during
 * it against before it (the ratio the guard bounds), and the migration's
 * throughput (slot bytes moved per second); and the throughput the guard cost.
 *
 *   npm run bench:guard                                 → bench/results/guard.json
 *   BENCH_ROWS=100000 BENCH_OUTPUT=/tmp/guard.json      a smaller run
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { addNode } from '../src/admin/addNode.js';
import { createShardedTable } from '../src/admin/createShardedTable.js';
import { initCluster } from '../src/admin/initCluster.js';
import { prepareRebalance, runPreparedRebalance } from '../src/admin/rebalance.js';
import { rollbackMigration } from '../src/admin/rollbackMigration.js';
import { percentile } from '../src/core/percentile.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../src/local/localServer.js';
import type { ClusterAccess } from '../src/plumbing/clusterAccess.js';
import { noPasswords } from '../src/plumbing/connectNode.js';
import type { MigrationEvent } from '../src/plumbing/migrationEvents.js';
import { Router } from '../src/router/index.js';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 1_000_000);
const SLOTS = Number(process.env['BENCH_SLOTS'] ?? 64);
const IMPACT = Number(process.env['BENCH_IMPACT'] ?? 1.2);
const CLIENTS = 8;
const THINK_MS = 5;
/** Traffic before each migration: the baseline (the guard reads the routers' reports of this period as its own). */
const BASELINE_SECONDS = Number(process.env['BENCH_BASELINE_SECONDS'] ?? 30);
const CONCURRENCY = 4;
const OUTPUT = process.env['BENCH_OUTPUT'] ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results', 'guard.json');

interface Call { startedMs: number; ms: number; slot: number }

interface PhaseStats { seconds: number; calls: number; p99_ms: number; p99_ratio: number }

interface RunResult {
  max_latency_impact: number | null;
  slots_moved: number;
  bytes_moved: number;
  seconds: number;
  /** Slot bytes moved per second (the unit of the plan and of progress). */
  bytes_per_sec: number;
  other_slots: {
    before: { calls: number; p50_ms: number; p99_ms: number };
    during: { calls: number; p50_ms: number; p99_ms: number };
    /** during p99 / before p99: what the guard bounds. */
    p99_ratio: number;
    /** The same during each phase: streaming (copy + catch-up, until the first switch), the cutovers, the cleanup. */
    phases: { stream: PhaseStats; cutovers: PhaseStats; cleanup: PhaseStats };
  };
  /** Guard's pauses (copies and cutovers stopped while the p99 was over the bound). */
  pauses: number;
  /** What the guard said (baseline, each slow-down and speed-up). */
  throttle: string[];
}

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

async function sql(server: LocalServer, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ ...server.connection });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

function stats(values: number[]): { calls: number; p50_ms: number; p99_ms: number } {
  return { calls: values.length, p50_ms: round(percentile(values, 0.5), 2), p99_ms: round(percentile(values, 0.99), 2) };
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

async function main(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-guard-bench-'));
  const servers: LocalServer[] = [];
  let router: Router | undefined;
  let running = true;
  const clients: Promise<void>[] = [];
  try {
    servers.push(...await Promise.all([1, 2, 3].map((i) => startLocalServer({ name: `g${i}`, baseDir, durable: true, settings: { shared_buffers: '256MB', max_wal_size: '4GB' } }))));
    const [n1, n2, n3] = servers as [LocalServer, LocalServer, LocalServer];
    const access: ClusterAccess = { catalog: n1.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: n1.connection });
    await addNode(access, { name: 'n2', connection: n2.connection });
    await createShardedTable(access, { name: 'accounts', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, balance bigint NOT NULL, note text NOT NULL' });
    router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'guard bench', holdTimeoutMs: 60_000, loadReportMs: 1_000 });
    // Each row straight into the node that owns its slot (the router computes the slot as PostgreSQL does).
    log(`loading ${ROWS} rows`);
    const keysByNode = new Map<string, number[]>();
    for (let key = 1; key <= ROWS; key++) {
      const owner = router.routeOf(router.slotOf(key)).owner;
      const keys = keysByNode.get(owner) ?? [];
      keys.push(key);
      keysByNode.set(owner, keys);
    }
    await Promise.all([n1, n2].map(async (server, index) => {
      const keys = keysByNode.get(`n${index + 1}`) ?? [];
      const client = new pg.Client({ ...server.connection });
      await client.connect();
      try {
        for (let at = 0; at < keys.length; at += 100_000) {
          await client.query("INSERT INTO accounts SELECT g, 0, repeat(md5(g::text), 4) FROM unnest($1::bigint[]) g", [keys.slice(at, at + 100_000)]);
        }
        await client.query('VACUUM ANALYZE accounts');
      } finally {
        await client.end();
      }
    }));
    await addNode(access, { name: 'n3', connection: n3.connection });

    const calls: Call[] = [];
    for (let client = 0; client < CLIENTS; client++) {
      clients.push((async () => {
        for (let index = 0; running; index++) {
          const key = 1 + Math.floor(Math.random() * ROWS);
          const slot = router!.slotOf(key);
          const startedMs = performance.now();
          try {
            if (index % 4 === 0) await router!.query(key, 'UPDATE accounts SET balance = balance + 1 WHERE id = $1', [key]);
            else await router!.query(key, 'SELECT balance FROM accounts WHERE id = $1', [key]);
            calls.push({ startedMs, ms: performance.now() - startedMs, slot });
          } catch (error) {
            log(`call failed: ${(error as Error).message}`);
          }
          await new Promise((resolve) => setTimeout(resolve, THINK_MS));
        }
      })());
    }

    const runOnce = async (impact: number | undefined): Promise<RunResult> => {
      // Each run's baseline is its own: the routers' reports of an earlier run (and its migration) are removed first.
      await sql(n1, 'DELETE FROM reshard.slot_load');
      log(`baseline: ${BASELINE_SECONDS} s of traffic`);
      const baselineFromMs = performance.now();
      await new Promise((resolve) => setTimeout(resolve, BASELINE_SECONDS * 1000));
      const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false, ...(impact !== undefined ? { throttle: { maxLatencyImpact: impact } } : {}) });
      if (prepared.migrationId === undefined) throw new Error('nothing to move: the cluster is balanced already');
      const moving = new Set(prepared.plan.moves.map((move) => move.slot));
      const throttle: string[] = [];
      let pauses = 0;
      const switchesAtMs: number[] = [];
      const emit = (event: MigrationEvent): void => {
        if (event.type === 'throttle') {
          throttle.push(event.reason);
          if (event.state === 'held') pauses += 1;
          log(event.reason);
        }
        if (event.type === 'move_done') switchesAtMs.push(performance.now());
      };
      log(`rebalance ${prepared.migrationId}: ${moving.size} slot(s), max latency impact ${impact ?? 'none'}`);
      const startedMs = performance.now();
      const summary = await runPreparedRebalance(access, prepared.migrationId, {
        emit, moveConcurrencyMax: CONCURRENCY, ...(impact !== undefined ? { throttle: { maxLatencyImpact: impact } } : {}),
      });
      const endedMs = performance.now();
      if (summary.state !== 'completed') throw new Error(`migration ${summary.migrationId} ${summary.state}: ${summary.error ?? ''}`);
      const others = (from: number, to: number): number[] => calls.filter((call) => !moving.has(call.slot) && call.startedMs >= from && call.startedMs + call.ms <= to).map((call) => call.ms);
      const before = stats(others(baselineFromMs, startedMs));
      const during = stats(others(startedMs, endedMs));
      const firstSwitchMs = switchesAtMs[0] ?? endedMs;
      const lastSwitchMs = switchesAtMs[switchesAtMs.length - 1] ?? endedMs;
      const phase = (from: number, to: number): PhaseStats => {
        const p99 = stats(others(from, to)).p99_ms;
        return { seconds: round((to - from) / 1000, 2), calls: others(from, to).length, p99_ms: p99, p99_ratio: round(p99 / before.p99_ms, 2) };
      };
      const result: RunResult = {
        max_latency_impact: impact ?? null, slots_moved: summary.slotsMoved, bytes_moved: summary.bytesMoved,
        seconds: round(summary.seconds, 2), bytes_per_sec: Math.round(summary.bytesMoved / summary.seconds),
        other_slots: {
          before, during, p99_ratio: round(during.p99_ms / before.p99_ms, 2),
          phases: { stream: phase(startedMs, firstSwitchMs), cutovers: phase(firstSwitchMs, lastSwitchMs), cleanup: phase(lastSwitchMs, endedMs) },
        },
        pauses,
        // The first 40 of the guard's messages: with a fast loop there can be hundreds.
        throttle: throttle.length > 40 ? [...throttle.slice(0, 40), `… ${throttle.length - 40} more`] : throttle,
      };
      log(JSON.stringify(result));
      return result;
    };

    const unguarded = await runOnce(undefined);
    log('rolling the rebalance back for the second run');
    const back = await rollbackMigration(access, { emit: () => {}, moveConcurrencyMax: CONCURRENCY });
    if (back.moveBack && back.moveBack.state !== 'completed') throw new Error(`the move back ended ${back.moveBack.state}`);
    const guarded = await runOnce(IMPACT);
    running = false;
    await Promise.all(clients);

    const report = {
      rows: ROWS, slots: SLOTS, clients: CLIENTS, think_ms: THINK_MS, baseline_seconds: BASELINE_SECONDS, concurrency: CONCURRENCY,
      router_load_report_ms: 1_000,
      runs: { unguarded, guarded },
      /** How much slower the guarded rebalance moved (1 − guarded / unguarded throughput). */
      guard_throughput_cost: round(1 - guarded.bytes_per_sec / unguarded.bytes_per_sec, 3),
    };
    mkdirSync(dirname(OUTPUT), { recursive: true });
    writeFileSync(OUTPUT, JSON.stringify(report, null, 2) + '\n');
    console.log(JSON.stringify(report, null, 2));
  } finally {
    running = false;
    await Promise.all(clients).catch(() => {});
    await router?.close().catch(() => {});
    for (const server of servers) await server.stop().catch(() => {});
    removeServerDirectory(baseDir);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
