/**
 * The router's cost on the data path: single-key primary-key reads, 8
 * concurrent clients, 20,000 calls, through `Router.query` (route check
 * pipelined with the statement) versus a direct `pg.Pool` on the same node.
 * Rounds alternate (router, direct, …) so that the shared, noisy machine
 * weighs on both alike; the median round of each is reported. Written to
 * bench/results/router.json.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { addNode } from '../src/admin/addNode.js';
import { createShardedTable } from '../src/admin/createShardedTable.js';
import { initCluster } from '../src/admin/initCluster.js';
import { percentile } from '../src/core/percentile.js';
import { removeServerDirectory, startLocalServer } from '../src/local/localServer.js';
import { noPasswords } from '../src/plumbing/connectNode.js';
import { Router } from '../src/router/index.js';

const CLIENTS = 8;
const CALLS = 20_000;
const ROWS = 10_000;
const ROUNDS = 5;
const SLOTS = 64;
const SQL = 'SELECT v FROM kv WHERE id = $1';

interface Round { callsPerSec: number; p50Ms: number; p99Ms: number }

async function runRound(call: (id: number) => Promise<unknown>): Promise<Round> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < CALLS) {
      next++;
      const id = 1 + Math.floor(Math.random() * ROWS);
      const from = performance.now();
      await call(id);
      latencies.push(performance.now() - from);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { callsPerSec: CALLS / seconds, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99) };
}

function median(rounds: Round[], field: keyof Round): number {
  return percentile([...rounds.map((round) => round[field])].sort((a, b) => a - b), 0.5);
}

async function main(): Promise<void> {
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-router-bench-'));
  const server = await startLocalServer({ name: 'rb1', baseDir });
  try {
    // One server holds the catalog and the only node: both sides reach the same tables.
    const access = { catalog: server.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: server.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v text NOT NULL' });
    const pool = new pg.Pool({ ...server.connection, max: CLIENTS });
    await pool.query(`INSERT INTO kv SELECT g, 'value ' || g FROM generate_series(1, ${ROWS}) g`);
    await pool.query('ANALYZE kv');
    const router = await Router.connect({ catalog: server.connection, poolSizePerNode: CLIENTS });
    const viaRouter = (id: number): Promise<unknown> => router.query(id, SQL, [id]);
    const direct = (id: number): Promise<unknown> => pool.query(SQL, [id]);
    // Warm both (connections, plans, caches).
    await runRound(viaRouter);
    await runRound(direct);
    const routerRounds: Round[] = [];
    const directRounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      routerRounds.push(await runRound(viaRouter));
      directRounds.push(await runRound(direct));
    }
    await router.close();
    await pool.end();
    const summary = {
      workload: `${CALLS} single-key primary-key reads, ${CLIENTS} concurrent clients, ${ROWS} rows, ${SLOTS} slots, one node; median of ${ROUNDS} alternating rounds`,
      router: { callsPerSec: Math.round(median(routerRounds, 'callsPerSec')), p50Ms: +median(routerRounds, 'p50Ms').toFixed(3), p99Ms: +median(routerRounds, 'p99Ms').toFixed(3) },
      direct: { callsPerSec: Math.round(median(directRounds, 'callsPerSec')), p50Ms: +median(directRounds, 'p50Ms').toFixed(3), p99Ms: +median(directRounds, 'p99Ms').toFixed(3) },
      throughputRatio: 0,
      p50Increase: 0,
      p99Increase: 0,
      rounds: { router: routerRounds, direct: directRounds },
      machine: { cpus: cpus().length, node: process.version },
      at: new Date().toISOString(),
    };
    summary.throughputRatio = +(summary.router.callsPerSec / summary.direct.callsPerSec).toFixed(3);
    summary.p50Increase = +(summary.router.p50Ms / summary.direct.p50Ms - 1).toFixed(3);
    summary.p99Increase = +(summary.router.p99Ms / summary.direct.p99Ms - 1).toFixed(3);
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/router.json', `${JSON.stringify(summary, null, 2)}\n`);
    console.log(`router ${summary.router.callsPerSec}/s p50 ${summary.router.p50Ms} ms p99 ${summary.router.p99Ms} ms; ` +
      `direct ${summary.direct.callsPerSec}/s p50 ${summary.direct.p50Ms} ms p99 ${summary.direct.p99Ms} ms; ` +
      `ratio ${summary.throughputRatio}, p50 ${(summary.p50Increase * 100).toFixed(1)} %, p99 ${(summary.p99Increase * 100).toFixed(1)} %`);
  } finally {
    await server.stop('fast');
    removeServerDirectory(baseDir);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
