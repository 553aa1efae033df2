import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { setSlotState } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import { fenceSlot, unfenceSlot } from '../../src/node/fence.js';
import { ROUTE_LOCK_CLASS } from '../../src/node/nodeHelpers.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;
const TABLES = [{ schema: 'public', name: 'kv', shardKey: ['id'] }];

/** The router's pooled connections to `node` (its pool's own list). */
function pooledClients(router: Router, node: string): pg.Client[] {
  const pool = (router as unknown as { openPools: Map<string, pg.Pool> }).openPools.get(node);
  return [...((pool as unknown as { _clients?: pg.Client[] } | undefined)?._clients ?? [])];
}

function socketOf(client: pg.Client): NodeJS.ReadableStream {
  return (client as unknown as { connection: { stream: NodeJS.ReadableStream } }).connection.stream;
}

/** A key of each slot. */
function keyOfSlot(slot: number): number {
  for (let id = 1; ; id++) if (slotOf('bigint', id, SLOTS) === slot) return id;
}

describe('route leases', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    // One server: catalog and the only node.
    cluster = await startTestServers(1, 'rl');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  /** Sessions (pids) holding the route lease (a session-level shared route lock) on `slot`, with how many holds. */
  async function leaseHolders(slot: number): Promise<number[]> {
    const probe = await connectTo(cluster.servers[0]!.connection);
    try {
      const result = await probe.query<{ pid: number }>(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock'
            AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2 ORDER BY pid`, [ROUTE_LOCK_CLASS, slot]);
      return result.rows.map((row) => row.pid);
    } finally {
      await probe.end();
    }
  }

  it('is taken once per session, given back by release_route_leases, and not kept after a refusal', async () => {
    const session = await connectTo(cluster.servers[0]!.connection);
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      const pid = (await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await session.query('SELECT reshard_node.route_lease(1, 1)');
      await session.query('SELECT reshard_node.route_lease(1, 1)');
      expect(await leaseHolders(1)).toEqual([pid]);
      // Outlives the transaction: a lease is session-level.
      await session.query('BEGIN; SELECT 1; ROLLBACK');
      expect(await leaseHolders(1)).toEqual([pid]);
      // One release gives it back whole (it was not stacked by the second check).
      await session.query('SELECT reshard_node.release_route_leases(ARRAY[1])');
      expect(await leaseHolders(1)).toEqual([]);

      const fence = await fenceSlot(admin, TABLES, 2, SLOTS, { epoch: 5 });
      expect(fence.ended).toEqual([]);
      const refused = await session.query('SELECT reshard_node.route_lease(2, 4)').catch((error: unknown) => error as { code?: string; detail?: string });
      expect((refused as { code?: string }).code).toBe('RSM01');
      expect(JSON.parse((refused as { detail: string }).detail)).toMatchObject({ slot: 2, state: 'frozen', epoch: 5, routed_epoch: 4 });
      expect(await leaseHolders(2)).toEqual([]);
      await unfenceSlot(admin, TABLES, 2, SLOTS, 6);
      await session.query('SELECT reshard_node.route_lease(2, 6)');
      expect(await leaseHolders(2)).toEqual([pid]);
    } finally {
      await session.end();
      await admin.end();
    }
  });

  it('does not hold a fence: an idle holder is ended at once, one in a transaction after the bound', async () => {
    const idle = await connectTo(cluster.servers[0]!.connection);
    idle.on('error', () => {});
    const busy = await connectTo(cluster.servers[0]!.connection);
    busy.on('error', () => {});
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      await idle.query('SELECT reshard_node.route_lease(3, 1)');
      const idlePid = (await idle.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      let started = performance.now();
      const fence = await fenceSlot(admin, TABLES, 3, SLOTS, { epoch: 7, holdersWaitMs: 5_000 });
      // Well below the 5 s bound: the idle holder was ended, not waited for.
      expect(performance.now() - started).toBeLessThan(2_500);
      expect(fence.ended.map((backend) => [backend.pid, backend.held])).toEqual([[idlePid, 'idle route lease']]);
      expect(await leaseHolders(3)).toEqual([]);
      const afterward = await idle.query('SELECT 1').catch((error: unknown) => error);
      expect(afterward).toBeInstanceOf(Error);
      const ended = await admin.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_stat_activity WHERE pid = $1', [idlePid]);
      expect(ended.rows[0]!.n).toBe('0');
      await unfenceSlot(admin, TABLES, 3, SLOTS, 8);

      // A transaction on a leased session holds the slot: the fence waits its bound, then ends it.
      await busy.query('SELECT reshard_node.route_lease(4, 1)');
      await busy.query('BEGIN');
      await busy.query('SELECT count(*) FROM kv');
      started = performance.now();
      const waited = await fenceSlot(admin, TABLES, 4, SLOTS, { epoch: 9, holdersWaitMs: 400 });
      expect(performance.now() - started).toBeGreaterThanOrEqual(390);
      expect(waited.ended.map((backend) => backend.held)).toEqual(['route lock']);
      expect(await busy.query('COMMIT').catch((error: unknown) => error)).toBeInstanceOf(Error);
      await unfenceSlot(admin, TABLES, 4, SLOTS, 10);
    } finally {
      await idle.end().catch(() => {});
      await busy.end().catch(() => {});
      await admin.end();
    }
  });

  it('lets the router skip the check on a leased slot and give the lease back when it sees a freeze', async () => {
    const router = await Router.connect({ catalog: access.catalog, poolSizePerNode: 2, routeLeasesPerConnection: 64 });
    const catalog = await connectTo(access.catalog);
    try {
      const slot = 5;
      const key = keyOfSlot(slot);
      await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 1)', [key]);
      const holders = await leaseHolders(slot);
      expect(holders.length).toBe(1);
      const held = await catalog.query<{ application_name: string }>('SELECT application_name FROM pg_stat_activity WHERE pid = $1', [holders[0]]);
      expect(held.rows[0]!.application_name).toMatch(/^reshard router/);
      // Served on the lease (no new lease, same session).
      await router.query(key, 'UPDATE kv SET v = v + 1 WHERE id = $1', [key]);
      expect(await leaseHolders(slot)).toEqual(holders);

      await setSlotState(catalog, slot, 'frozen');
      const deadline = performance.now() + 5_000;
      while ((await leaseHolders(slot)).length > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
      expect(router.routeOf(slot).frozen).toBe(true);
      expect(await leaseHolders(slot)).toEqual([]);
      // The router's session is still open (the lease was given back, not ended).
      const open = await catalog.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_stat_activity WHERE pid = $1', [holders[0]]);
      expect(open.rows[0]!.n).toBe('1');

      await setSlotState(catalog, slot, 'active');
      const value = await router.query<{ v: string }>(key, 'SELECT v FROM kv WHERE id = $1', [key]);
      expect(value.rows[0]!.v).toBe('2');
      expect((await leaseHolders(slot)).length).toBe(1);
    } finally {
      await catalog.end();
      await router.close();
    }
  });

  it('gives a lease back at once from a connection busy with a transaction on another slot', async () => {
    // One connection: it holds slot 6's lease and serves a transaction on slot 7 when 6 is frozen.
    const router = await Router.connect({ catalog: access.catalog, poolSizePerNode: 1, routeLeasesPerConnection: 64 });
    const catalog = await connectTo(access.catalog);
    try {
      const [frozenSlot, busySlot] = [6, 7];
      await router.query(keyOfSlot(frozenSlot), 'SELECT 1');
      expect((await leaseHolders(frozenSlot)).length).toBe(1);
      const heldDuring = await router.transaction(keyOfSlot(busySlot), async (client) => {
        await client.query('SELECT count(*) FROM kv');
        await setSlotState(catalog, frozenSlot, 'frozen');
        const deadline = performance.now() + 5_000;
        while ((await leaseHolders(frozenSlot)).length > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
        const holders = await leaseHolders(frozenSlot);
        await client.query('SELECT count(*) FROM kv');
        return holders.length;
      });
      expect(heldDuring).toBe(0);
      // The transaction's own slot keeps its lease.
      expect((await leaseHolders(busySlot)).length).toBe(1);
      await setSlotState(catalog, frozenSlot, 'active');
    } finally {
      await catalog.end();
      await router.close();
    }
  });

  it('sends a call again, once, when the node ended its pooled connection before the router read the end', async () => {
    // A stalled application process: the fence ends its idle lease holders, and when the process
    // wakes its next calls may go out on those connections before it reads their end. Here the
    // router's sockets stop reading while the node ends their sessions, as a stopped process's do.
    const router = await Router.connect({ catalog: access.catalog, poolSizePerNode: 2, routeLeasesPerConnection: 64 });
    const admin = await connectTo(cluster.servers[0]!.connection);
    const waitForRead = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    try {
      const key = keyOfSlot(0);
      await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 0) ON CONFLICT (id) DO UPDATE SET v = 0', [key]);
      for (const call of ['statement', 'transaction'] as const) {
        const clients = pooledClients(router, 'n1');
        expect(clients.length).toBeGreaterThan(0);
        for (const client of clients) socketOf(client).pause();
        const ended = await admin.query<{ ended: boolean }>('SELECT pg_terminate_backend(pid) AS ended FROM unnest($1::int[]) AS pid',
          [clients.map((client) => (client as unknown as { processID: number }).processID)]);
        expect(ended.rows.every((row) => row.ended)).toBe(true);
        await new Promise((resolve) => setTimeout(resolve, 200));
        let runs = 0;
        const updating = call === 'statement'
          ? router.query(key, 'UPDATE kv SET v = v + 1 WHERE id = $1', [key])
          : router.transaction(key, async (client) => {
            runs++;
            return client.query('UPDATE kv SET v = v + 1 WHERE id = $1', [key]);
          });
        // The call is on the wire of an ended session; only now the router reads that session's end.
        await waitForRead();
        for (const client of clients) socketOf(client).resume();
        const result = await updating;
        expect(result.rowCount).toBe(1);
        if (call === 'transaction') expect(runs).toBe(1);
      }
      const value = await admin.query<{ v: string }>('SELECT v::text FROM kv WHERE id = $1', [key]);
      expect(value.rows[0]!.v).toBe('2');
    } finally {
      await admin.end();
      await router.close();
    }
  });
});
