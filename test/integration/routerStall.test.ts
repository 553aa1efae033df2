import { fork, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { slotOf } from '../../src/core/hash.js';
import { percentile } from '../../src/core/percentile.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;
const COUNTERS = 24;
const STALLS_MIN = 50;
const SWITCHES_MIN = 20;
const CYCLES_MAX = 24;
/** ROUTER_ACK_WAIT_MS_DEFAULT, the longest a freeze waits for routers. */
const ACK_WAIT_BOUND_MS = 200;

interface ChildLog {
  incrementsAcked: Record<string, number>;
  incrementsUnknown: Record<string, number>;
  insertedAcked: number[];
  insertedUnknown: number[];
  anomalies: string[];
  errors: string[];
  /** The calls that ended with an unknown outcome, with their error (the first 100). */
  unknownErrors: string[];
  notApplied: number;
  transactionsAcrossStall: number;
  operations: number;
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));
const between = (low: number, high: number): number => low + Math.random() * (high - low);

/**
 * The lost write of issue 11: an application process stalls (SIGSTOP) at
 * random instants, inside transactions too, for longer than every bound (the
 * router's lease, the fence's wait for open transactions), while its slots
 * switch and the old leaves are cleaned up. Every acknowledged write must be
 * on the nodes afterwards, and no call may have returned a silent 0-row result.
 */
describe('a router whose process stalls at random instants across many switches', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    // Servers 1–3 are nodes (n3 joins and leaves again and again); server 4 holds the catalog.
    cluster = await startTestServers(4, 'stall');
    access = { catalog: cluster.servers[3]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'counters', shardKey: ['k'], definition: 'k bigint PRIMARY KEY, n bigint NOT NULL' });
    await createShardedTable(access, { name: 'items', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, worker int NOT NULL', colocateWith: 'counters' });
    const slotMap = await withCatalogMap(access);
    for (let k = 1; k <= COUNTERS; k++) {
      const node = cluster.servers[slotMap.owners[slotOf('bigint', k, SLOTS)] === 'n1' ? 0 : 1]!;
      const client = await connectTo(node.connection);
      await client.query('INSERT INTO counters (k, n) VALUES ($1, 0)', [k]);
      await client.end();
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('loses no acknowledged write and returns no silent 0-row result', async () => {
    const child = startClient(access);
    let stalls = 0;
    let switches = 0;
    let cycles = 0;
    let migrating = true;
    const stopped = { now: false };
    try {
      await new Promise<void>((ready, failed) => {
        child.once('message', () => ready());
        child.once('exit', (code) => failed(new Error(`the client exited early (${code})`)));
      });
      const staller = (async () => {
        while (migrating) {
          await sleep(between(50, 250));
          if (!migrating) break;
          child.kill('SIGSTOP');
          stopped.now = true;
          stalls++;
          // Longer than the client's lease (1 s) and than the fence's wait for open transactions (1 s).
          await sleep(between(1_300, 2_500));
          child.kill('SIGCONT');
          stopped.now = false;
        }
      })();
      try {
        while ((stalls < STALLS_MIN || switches < SWITCHES_MIN) && cycles < CYCLES_MAX) {
          cycles++;
          await addNode(access, { name: 'n3', connection: cluster.servers[2]!.connection });
          switches += await rebalanceOnline(access);
          await removeNode(access, 'n3');
          switches += await rebalanceOnline(access);
        }
      } finally {
        migrating = false;
        await staller;
      }
      child.send({ stop: true });
      const log = await new Promise<ChildLog>((done) => child.once('message', (message: { log: ChildLog }) => done(message.log)));
      const violations = await verifyOnNodes(access, log);
      console.log(`stalls ${stalls}, switches ${switches}, cycles ${cycles}, operations ${log.operations}, transactions across a stall ${log.transactionsAcrossStall}, ` +
        `refused as not applied ${log.notApplied}, unknown ${Object.values(log.incrementsUnknown).reduce((a, b) => a + b, 0) + log.insertedUnknown.length}; errors seen: ${log.errors.slice(0, 5).join(' | ')}`);
      if (log.unknownErrors.length > 0) console.log(`unknown outcomes:\n${log.unknownErrors.join('\n')}`);
      expect(stalls).toBeGreaterThanOrEqual(STALLS_MIN);
      expect(switches).toBeGreaterThanOrEqual(SWITCHES_MIN);
      expect(log.transactionsAcrossStall).toBeGreaterThan(0);
      expect(log.anomalies).toEqual([]);
      expect(violations).toEqual([]);
      expect((await verifyCluster(access)).problems).toEqual([]);
      // The stalled process holds a Router: no freeze waited for its acknowledgement beyond the bound
      // (200 ms, plus the catalog round trips), and some freezes went on without it.
      const freezes = await freezeDetails(access);
      console.log(`freezes ${freezes.length}: routers' ack wait max ${Math.max(...freezes.map((f) => f.routersAckedMs)).toFixed(0)} ms, ` +
        `without the stalled router's ack ${freezes.filter((f) => f.routersNotAcked.length > 0).length}, sessions ended ${freezes.reduce((n, f) => n + f.endedSessions, 0)}, ` +
        `round trips max ${Math.max(...freezes.map((f) => f.roundTrips))}`);
      const quiet = freezes.filter((f) => f.endedSessions === 0 && f.routersNotAcked.length === 0).map((f) => f.fencedMs).sort((x, y) => x - y);
      const pauses = await movePauses(access);
      console.log(`freeze → fenced, when nothing stalled (${quiet.length}): p50 ${percentile(quiet, 0.5).toFixed(0)} ms, p99 ${percentile(quiet, 0.99).toFixed(0)} ms; ` +
        `write pause per slot (freeze → switch, ${pauses.length} moves): p50 ${percentile(pauses, 0.5).toFixed(0)} ms, p99 ${percentile(pauses, 0.99).toFixed(0)} ms`);
      expect(freezes.length).toBeGreaterThanOrEqual(SWITCHES_MIN);
      expect(Math.max(...freezes.map((f) => f.routersAckedMs))).toBeLessThan(ACK_WAIT_BOUND_MS + 300);
      expect(freezes.some((f) => f.routersNotAcked.includes('stalling client'))).toBe(true);
    } finally {
      if (stopped.now) child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  }, 900_000);
});

function startClient(access: ClusterAccess): ChildProcess {
  const routerModule = process.env['RESHARD_STALL_ROUTER_MODULE'] ?? pathToFileURL(resolve('dist/router/index.js')).href;
  return fork(resolve('test/support/stallingRouterClient.mjs'), {
    env: { ...process.env, RESHARD_ROUTER_MODULE: routerModule, RESHARD_STALL_CLIENT: JSON.stringify({ catalog: access.catalog, clients: 6, counters: COUNTERS, leaseMs: 1_000, ...routeLeases() }) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** RESHARD_STALL_ROUTE_LEASES=0 runs the client without node leases (else the router's default, with them). */
function routeLeases(): { routeLeases?: boolean } {
  const value = process.env['RESHARD_STALL_ROUTE_LEASES'];
  return value === undefined ? {} : { routeLeases: value !== '0' };
}

async function rebalanceOnline(access: ClusterAccess): Promise<number> {
  const result = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 2, emit: () => {} });
  expect(result.summary?.error ?? '').toBe('');
  expect(result.summary?.state).toBe('completed');
  return result.summary?.slotsMoved ?? 0;
}

async function withCatalogMap(access: ClusterAccess): Promise<{ owners: readonly (string | undefined)[] }> {
  const catalog = await connectTo(access.catalog);
  try {
    return await readSlotMap(catalog);
  } finally {
    await catalog.end();
  }
}

/** Every acknowledged write, read back from the nodes themselves. */
async function verifyOnNodes(access: ClusterAccess, log: ChildLog): Promise<string[]> {
  const catalog = await connectTo(access.catalog);
  const nodes = await catalog.query<{ name: string; host: string; port: number; database: string; username: string }>("SELECT name, host, port, database, username FROM reshard.node WHERE state <> 'removed'");
  const { owners } = await readSlotMap(catalog);
  await catalog.end();
  const counters = new Map<number, { node: string; n: number }[]>();
  const items = new Map<number, string[]>();
  for (const node of nodes.rows) {
    const client = await connectTo({ host: node.host, port: node.port, database: node.database, user: node.username });
    for (const row of (await client.query<{ k: string; n: string }>('SELECT k::text, n::text FROM counters')).rows) {
      counters.set(Number(row.k), [...(counters.get(Number(row.k)) ?? []), { node: node.name, n: Number(row.n) }]);
    }
    for (const row of (await client.query<{ id: string }>('SELECT id::text FROM items')).rows) {
      items.set(Number(row.id), [...(items.get(Number(row.id)) ?? []), node.name]);
    }
    await client.end();
  }
  const violations: string[] = [];
  for (let k = 1; k <= COUNTERS; k++) {
    const copies = counters.get(k) ?? [];
    if (copies.length !== 1) { violations.push(`counter ${k} exists ${copies.length} times`); continue; }
    const { node, n } = copies[0]!;
    if (node !== owners[slotOf('bigint', k, SLOTS)]) violations.push(`counter ${k} is on ${node}, its slot's owner is ${owners[slotOf('bigint', k, SLOTS)]}`);
    const acked = log.incrementsAcked[k] ?? 0;
    const unknown = log.incrementsUnknown[k] ?? 0;
    if (n < acked) violations.push(`counter ${k} is ${n}: ${acked - n} of its ${acked} acknowledged increments are lost`);
    if (n > acked + unknown) violations.push(`counter ${k} is ${n}, more than its ${acked} acknowledged + ${unknown} unknown increments`);
  }
  const unknownItems = new Set(log.insertedUnknown);
  for (const id of log.insertedAcked) {
    const holders = items.get(id) ?? [];
    if (holders.length !== 1) violations.push(`acknowledged insert of item ${id} exists ${holders.length} times`);
  }
  const acked = new Set(log.insertedAcked);
  for (const [id, holders] of items) {
    if (!acked.has(id) && !unknownItems.has(id)) violations.push(`item ${id} (on ${holders.join(', ')}) was refused as not applied, yet exists`);
  }
  return violations;
}

/** What each freeze step journaled: its wait for routers, who had not acknowledged, the sessions it ended. */
async function freezeDetails(access: ClusterAccess): Promise<{ routersAckedMs: number; fencedMs: number; routersNotAcked: string[]; endedSessions: number; roundTrips: number }[]> {
  const catalog = await connectTo(access.catalog);
  try {
    const rows = await catalog.query<{ detail: { routersAckedMs: number; fencedMs: number; routersNotAcked?: string[]; endedSessions?: unknown[]; round_trips: number } }>(
      "SELECT detail FROM reshard.journal WHERE step = 'freeze' AND action = 'done' ORDER BY id");
    return rows.rows.map(({ detail }) => ({
      routersAckedMs: detail.routersAckedMs, fencedMs: detail.fencedMs, routersNotAcked: detail.routersNotAcked ?? [], endedSessions: detail.endedSessions?.length ?? 0, roundTrips: detail.round_trips,
    }));
  } finally {
    await catalog.end();
  }
}

/** Each switched move's write pause (freeze → switch), ms. */
async function movePauses(access: ClusterAccess): Promise<number[]> {
  const catalog = await connectTo(access.catalog);
  try {
    const rows = await catalog.query<{ pause_ms: number }>('SELECT pause_ms FROM reshard.move WHERE pause_ms IS NOT NULL ORDER BY pause_ms');
    return rows.rows.map((row) => Number(row.pause_ms));
  } finally {
    await catalog.end();
  }
}
