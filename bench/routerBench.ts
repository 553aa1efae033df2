/**
 * The router's cost on the data path: single-key primary-key reads, 8
 * concurrent clients, 20,000 calls, through `Router.query` versus a direct
 * `pg.Pool` on the same node. Two routers: the default one (node leases: a
 * connection that passed one route check on its node sends later single
 * statements there with no check) and one with `routeLeases: false` (the
 * route check pipelined with every statement), to show what the lease saves. Each round
 * runs the three one after the other (in a rotating order) so that the shared,
 * noisy machine weighs on all alike; the ratios are taken within each round
 * and their median reported, with the median round of each. Rounds are short
 * (10,000 calls each) so that neighbours share the machine's load swings.
 * Beside time, each round's CPU per call: the application process's own
 * (process.cpuUsage) and the server's (every process under the postmaster,
 * from /proc), a measure that a busy machine disturbs far less than
 * throughput. Written to bench/results/router.json.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
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
const CALLS = 10_000;
const ROWS = 10_000;
const ROUNDS = 13;
const SLOTS = 64;
const SQL = 'SELECT v FROM kv WHERE id = $1';

interface Round { callsPerSec: number; p50Ms: number; p99Ms: number; clientCpuUsPerCall: number; serverCpuUsPerCall: number }

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU ticks used so far by each of the server's processes (its postmaster's
 * children: backends and helpers), by pid.
 */
function serverCpuTicks(postmasterPid: number): Map<number, number> {
  const ticks = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command (which may hold spaces) start at the last ')': state ppid … utime stime.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === postmasterPid) ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
    } catch {
      // The process ended meanwhile.
    }
  }
  return ticks;
}

/**
 * The server's CPU time (µs) between two readings, over the processes alive
 * at the second: a pool closes connections idle for 10 s, and an ended
 * backend's whole past must not count against the round it ended in.
 */
function serverCpuUsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, used] of after) ticks += used - (before.get(pid) ?? 0);
  return (ticks * 1_000_000) / TICKS_PER_SECOND;
}

async function runRound(call: (id: number) => Promise<unknown>, postmasterPid: number): Promise<Round> {
  const latencies: number[] = [];
  let next = 0;
  const serverCpuBefore = serverCpuTicks(postmasterPid);
  const clientCpuBefore = process.cpuUsage();
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
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const serverCpu = serverCpuUsBetween(serverCpuBefore, serverCpuTicks(postmasterPid));
  latencies.sort((a, b) => a - b);
  return { callsPerSec: CALLS / seconds, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99),
    clientCpuUsPerCall: (clientCpu.user + clientCpu.system) / CALLS, serverCpuUsPerCall: serverCpu / CALLS };
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
    const checkedRouter = await Router.connect({ catalog: server.connection, poolSizePerNode: CLIENTS, routeLeases: false });
    const arms = {
      router: (id: number): Promise<unknown> => router.query(id, SQL, [id]),
      checkedRouter: (id: number): Promise<unknown> => checkedRouter.query(id, SQL, [id]),
      direct: (id: number): Promise<unknown> => pool.query(SQL, [id]),
    };
    type Arm = keyof typeof arms;
    const names = Object.keys(arms) as Arm[];
    const postmasterPid = Number(readFileSync(join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    // Warm all (connections, plans, caches, leases).
    for (const name of names) await runRound(arms[name], postmasterPid);
    const rounds: Record<Arm, Round[]> = { router: [], checkedRouter: [], direct: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (let index = 0; index < names.length; index++) {
        const name = names[(round + index) % names.length]!;
        rounds[name].push(await runRound(arms[name], postmasterPid));
      }
    }
    await router.close();
    await checkedRouter.close();
    await pool.end();
    const typical = (of: Round[]): Round => ({ callsPerSec: Math.round(median(of, 'callsPerSec')), p50Ms: +median(of, 'p50Ms').toFixed(3), p99Ms: +median(of, 'p99Ms').toFixed(3),
      clientCpuUsPerCall: +median(of, 'clientCpuUsPerCall').toFixed(1), serverCpuUsPerCall: +median(of, 'serverCpuUsPerCall').toFixed(1) });
    /** Median over rounds of `field`'s ratio to direct within the same round. */
    const pairedRatio = (arm: Arm, field: keyof Round): number => {
      const ratios = rounds[arm].map((armRound, index) => armRound[field] / rounds.direct[index]![field]).sort((a, b) => a - b);
      return percentile(ratios, 0.5);
    };
    const versusDirect = (arm: Arm) => ({
      throughputRatio: +pairedRatio(arm, 'callsPerSec').toFixed(3),
      p50Increase: +(pairedRatio(arm, 'p50Ms') - 1).toFixed(3),
      p99Increase: +(pairedRatio(arm, 'p99Ms') - 1).toFixed(3),
      clientCpuIncrease: +(pairedRatio(arm, 'clientCpuUsPerCall') - 1).toFixed(3),
      serverCpuIncrease: +(pairedRatio(arm, 'serverCpuUsPerCall') - 1).toFixed(3),
    });
    const summary = {
      workload: `${CALLS} single-key primary-key reads, ${CLIENTS} concurrent clients, ${ROWS} rows, ${SLOTS} slots, one node; ${ROUNDS} rounds of router, router without leases and direct in rotating order`,
      router: typical(rounds.router),
      direct: typical(rounds.direct),
      // Within-round ratios (median over rounds): the machine's load drifts between rounds.
      ...versusDirect('router'),
      withoutLeases: { ...typical(rounds.checkedRouter), ...versusDirect('checkedRouter') },
      rounds,
      machine: { cpus: cpus().length, node: process.version, loadAverage1m: +loadavg()[0]!.toFixed(2) },
      at: new Date().toISOString(),
    };
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(process.env['BENCH_OUTPUT'] ?? 'bench/results/router.json', `${JSON.stringify(summary, null, 2)}\n`);
    const line = (name: string, round: Round, ratios: ReturnType<typeof versusDirect>): string =>
      `${name} ${round.callsPerSec}/s p50 ${round.p50Ms} ms p99 ${round.p99Ms} ms cpu/call ${round.clientCpuUsPerCall}+${round.serverCpuUsPerCall} µs (ratio ${ratios.throughputRatio}, p50 ${(ratios.p50Increase * 100).toFixed(1)} %, p99 ${(ratios.p99Increase * 100).toFixed(1)} %, client cpu ${(ratios.clientCpuIncrease * 100).toFixed(1)} %, server cpu ${(ratios.serverCpuIncrease * 100).toFixed(1)} %)`;
    console.log(`${line('router', summary.router, versusDirect('router'))}; ${line('router without leases', summary.withoutLeases, versusDirect('checkedRouter'))}; ` +
      `direct ${summary.direct.callsPerSec}/s p50 ${summary.direct.p50Ms} ms p99 ${summary.direct.p99Ms} ms cpu/call ${summary.direct.clientCpuUsPerCall}+${summary.direct.serverCpuUsPerCall} µs; load ${summary.machine.loadAverage1m}`);
  } finally {
    await server.stop('fast');
    removeServerDirectory(baseDir);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
