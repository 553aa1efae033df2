import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { setSlotState } from '../../src/catalog/slotMap.js';
import { fenceSlot, unfenceSlot } from '../../src/node/fence.js';
import { NODE_LEASE_LOCK_CLASS } from '../../src/node/nodeHelpers.js';
import { markSlotMoved, nodeLeaseSql, routeLeaseSeenSql } from '../../src/node/slotState.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { keyOfSlot } from '../support/slotKeys.js';
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

describe('node leases', () => {
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

  /** Sessions (pids) holding the node lease (a session-level shared advisory lock). */
  async function leaseHolders(): Promise<number[]> {
    const probe = await connectTo(cluster.servers[0]!.connection);
    try {
      const result = await probe.query<{ pid: number }>(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock'
            AND classid = $1::bigint::oid AND objid = 0 AND objsubid = 2 ORDER BY pid`, [NODE_LEASE_LOCK_CLASS]);
      return result.rows.map((row) => row.pid);
    } finally {
      await probe.end();
    }
  }

  async function pidOf(client: pg.ClientBase): Promise<number> {
    return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  }

  async function catalogEpoch(catalog: pg.ClientBase): Promise<number> {
    return Number((await catalog.query<{ epoch: string }>('SELECT epoch::text FROM reshard.cluster')).rows[0]!.epoch);
  }

  it('is granted once per session to a router whose map is current, and refused (the check still passing) to one behind', async () => {
    const session = await connectTo(cluster.servers[0]!.connection);
    const behind = await connectTo(cluster.servers[0]!.connection);
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      const pid = await pidOf(session);
      const granted = await session.query<{ leased: boolean }>(nodeLeaseSql(1, 1));
      expect(granted.rows[0]!.leased).toBe(true);
      expect((await session.query<{ leased: boolean }>(nodeLeaseSql(2, 1))).rows[0]!.leased).toBe(true);
      expect(await leaseHolders()).toEqual([pid]);
      // Outlives the transaction: the lease is session-level, one lock however many checks.
      await session.query('BEGIN; SELECT 1; ROLLBACK');
      expect(await leaseHolders()).toEqual([pid]);

      // Its router says it saw the freeze first, so the fence leaves it alone.
      await admin.query(routeLeaseSeenSql([pid], 5));
      const fence = await fenceSlot(admin, TABLES, 2, SLOTS, { epoch: 5 });
      expect(fence.ended).toEqual([]);
      const refused = await behind.query(nodeLeaseSql(2, 4)).catch((error: unknown) => error as { code?: string; detail?: string });
      expect((refused as { code?: string }).code).toBe('RSM01');
      expect(JSON.parse((refused as { detail: string }).detail)).toMatchObject({ slot: 2, state: 'frozen', epoch: 5, routed_epoch: 4 });
      // Another slot passes the check, but a router that has not seen epoch 5 takes no lease.
      expect((await behind.query<{ leased: boolean }>(nodeLeaseSql(1, 4))).rows[0]!.leased).toBe(false);
      expect(await leaseHolders()).toEqual([pid]);
      await unfenceSlot(admin, TABLES, 2, SLOTS, 6);
      expect((await behind.query<{ leased: boolean }>(nodeLeaseSql(1, 6))).rows[0]!.leased).toBe(true);
      expect((await leaseHolders()).sort()).toEqual([pid, await pidOf(behind)].sort());
      // The tests after start from a node that has seen no change (the catalog's epochs are lower than these).
      await admin.query('DELETE FROM reshard_node.slot_state');
    } finally {
      await session.end();
      await behind.end();
      await admin.end();
    }
  });

  it('lets a fence wait for holders whose router has not seen the freeze (an idle one briefly, one at work its bound), then end them; a holder that reported it is left to its long call', async () => {
    const silent = await connectTo(cluster.servers[0]!.connection);
    silent.on('error', () => {});
    const silentAtWork = await connectTo(cluster.servers[0]!.connection);
    silentAtWork.on('error', () => {});
    const reported = await connectTo(cluster.servers[0]!.connection);
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      for (const session of [silent, silentAtWork, reported]) expect((await session.query<{ leased: boolean }>(nodeLeaseSql(0, 10))).rows[0]!.leased).toBe(true);
      const [silentPid, atWorkPid, reportedPid] = [await pidOf(silent), await pidOf(silentAtWork), await pidOf(reported)];
      await admin.query(routeLeaseSeenSql([reportedPid], 11));
      // Long statements on another slot: one on the session whose router reported the freeze, one on a session whose router did not.
      const longCall = reported.query('SELECT pg_sleep(1.5), count(*) FROM kv');
      const cutCall = silentAtWork.query('SELECT pg_sleep(1.5), count(*) FROM kv').catch((error: unknown) => error);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = performance.now();
      const fence = await fenceSlot(admin, TABLES, 3, SLOTS, { epoch: 11, holdersWaitMs: 400 });
      expect(performance.now() - started).toBeGreaterThanOrEqual(390);
      expect(performance.now() - started).toBeLessThan(1_300);
      expect(fence.ended.map((backend) => backend.pid).sort()).toEqual([silentPid, atWorkPid].sort());
      expect(fence.ended.find((backend) => backend.pid === silentPid)?.state).toBe('idle');
      expect(fence.ended.find((backend) => backend.pid === atWorkPid)?.state).toBe('active');
      // The switch after it waits for nobody.
      expect((await markSlotMoved(admin, 3, 'n2', 12, 400)).ended).toEqual([]);
      expect(await silent.query('SELECT 1').catch((error: unknown) => error)).toBeInstanceOf(Error);
      expect(await cutCall).toBeInstanceOf(Error);
      expect((await longCall).rowCount).toBe(1);
      expect(await leaseHolders()).toEqual([reportedPid]);
      await unfenceSlot(admin, TABLES, 3, SLOTS, 13);
      await admin.query('DELETE FROM reshard_node.slot_state');
    } finally {
      await silent.end().catch(() => {});
      await silentAtWork.end().catch(() => {});
      await reported.end();
      await admin.end();
    }
  });

  it('ends an idle holder whose router has not seen the freeze within a few tens of ms, not the whole bound (a stalled router holds no fence)', async () => {
    const silent = await connectTo(cluster.servers[0]!.connection);
    silent.on('error', () => {});
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      expect((await silent.query<{ leased: boolean }>(nodeLeaseSql(0, 10))).rows[0]!.leased).toBe(true);
      const silentPid = await pidOf(silent);
      const started = performance.now();
      const fence = await fenceSlot(admin, TABLES, 4, SLOTS, { epoch: 11, holdersWaitMs: 5_000 });
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(fence.ended.map((backend) => [backend.pid, backend.state])).toEqual([[silentPid, 'idle']]);
      expect(await leaseHolders()).toEqual([]);
      await unfenceSlot(admin, TABLES, 4, SLOTS, 13);
      await admin.query('DELETE FROM reshard_node.slot_state');
    } finally {
      await silent.end().catch(() => {});
      await admin.end();
    }
  });

  it('reads each holder\'s state afresh while it settles: a holder idle at first that starts a call is waited for, not ended mid-call', async () => {
    const holder = await connectTo(cluster.servers[0]!.connection);
    holder.on('error', () => {});
    const admin = await connectTo(cluster.servers[0]!.connection);
    const probe = await connectTo(cluster.servers[0]!.connection);
    try {
      expect((await holder.query<{ leased: boolean }>(nodeLeaseSql(0, 10))).rows[0]!.leased).toBe(true);
      const holderPid = await pidOf(holder);
      const adminPid = await pidOf(admin);
      // Idle holders get 500 ms here (a fence gives them 25): room to start the call after the settle's first look.
      const settling = admin.query<{ ended_pid: number; ended_state: string }>('SELECT ended_pid, ended_state FROM reshard_node.settle_route_leases(11, 3000, 500)');
      const deadline = performance.now() + 2_000;
      const settleRunning = async (): Promise<boolean> =>
        (await probe.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [adminPid])).rows[0]!.n === 1;
      while (!(await settleRunning()) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2));
      const sent = performance.now();
      const call = await holder.query<{ n: string }>('SELECT pg_sleep(0.8), count(*)::text AS n FROM kv');
      expect(performance.now() - sent).toBeGreaterThanOrEqual(790);
      expect(call.rowCount).toBe(1);
      // Ended once idle again, past its idle bound.
      expect((await settling).rows.map((row) => [row.ended_pid, row.ended_state])).toEqual([[holderPid, 'idle']]);
      expect(await leaseHolders()).toEqual([]);
    } finally {
      await holder.end().catch(() => {});
      await admin.end();
      await probe.end();
    }
  });

  it('sends a leased statement again, once, when the node ends its session mid-statement (before the statement completed, nothing committed)', async () => {
    const router = await Router.connect({ catalog: access.catalog, poolSizePerNode: 2 });
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      const key = keyOfSlot(1, SLOTS);
      await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 0) ON CONFLICT (id) DO UPDATE SET v = 0', [key]);
      await router.query(key, 'SELECT 1');
      const updating = router.query(key, 'UPDATE kv SET v = v + 1 WHERE id = $1 RETURNING pg_sleep(0.4)', [key]);
      const deadline = performance.now() + 2_000;
      let ended: number[] = [];
      while (ended.length === 0 && performance.now() < deadline) {
        const found = await admin.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'UPDATE kv SET v = v + 1%' AND pid <> pg_backend_pid() AND pg_terminate_backend(pid)");
        ended = found.rows.map((row) => row.pid);
      }
      expect(ended.length).toBe(1);
      const result = await updating;
      expect(result.rowCount).toBe(1);
      const value = await admin.query<{ v: string }>('SELECT v::text FROM kv WHERE id = $1', [key]);
      expect(value.rows[0]!.v).toBe('1');
    } finally {
      await admin.end();
      await router.close();
    }
  });

  it('makes a router report a freeze to the node at once: the fence waits for none of its connections, and its long call on another slot goes on', async () => {
    const router = await Router.connect({ catalog: access.catalog, poolSizePerNode: 2 });
    const catalog = await connectTo(access.catalog);
    const admin = await connectTo(cluster.servers[0]!.connection);
    try {
      const [frozenSlot, busySlot] = [5, 6];
      const key = keyOfSlot(frozenSlot, SLOTS);
      await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 1)', [key]);
      await Promise.all([router.query(key, 'SELECT pg_sleep(0.05)'), router.query(keyOfSlot(busySlot, SLOTS), 'SELECT pg_sleep(0.05)')]);
      const holders = await leaseHolders();
      expect(holders.length).toBe(2);
      const held = await catalog.query<{ application_name: string }>('SELECT application_name FROM pg_stat_activity WHERE pid = ANY($1)', [holders]);
      expect(held.rows.every((row) => /^reshard router/.test(row.application_name))).toBe(true);
      // Served on the lease: no check, same sessions.
      expect((await router.query(key, 'UPDATE kv SET v = v + 1 WHERE id = $1', [key])).rowCount).toBe(1);

      const longCall = router.query(keyOfSlot(busySlot, SLOTS), 'SELECT pg_sleep(1.5), count(*) FROM kv');
      await new Promise((resolve) => setTimeout(resolve, 100));
      await setSlotState(catalog, frozenSlot, 'frozen');
      const epoch = await catalogEpoch(catalog);
      const deadline = performance.now() + 5_000;
      while (!router.routeOf(frozenSlot).frozen && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(router.routeOf(frozenSlot).frozen).toBe(true);
      const started = performance.now();
      const fence = await fenceSlot(admin, TABLES, frozenSlot, SLOTS, { epoch, holdersWaitMs: 3_000 });
      expect(fence.ended).toEqual([]);
      expect(performance.now() - started).toBeLessThan(1_000);
      await markSlotMoved(admin, frozenSlot, 'n1', epoch + 1, 3_000);
      expect((await longCall).rowCount).toBe(1);
      expect((await leaseHolders()).sort()).toEqual([...holders].sort());

      // Back as it was (this node owns the slot again) for the tests after.
      await admin.query(`DELETE FROM reshard_node.slot_state WHERE slot = ${frozenSlot}`);
      await unfenceSlot(admin, TABLES, frozenSlot, SLOTS, epoch + 2);
      await setSlotState(catalog, frozenSlot, 'active');
      const value = await router.query<{ v: string }>(key, 'SELECT v FROM kv WHERE id = $1', [key]);
      expect(value.rows[0]!.v).toBe('2');
    } finally {
      await admin.end();
      await catalog.end();
      await router.close();
    }
  });

  it('sends a call again, once, when the node ended its pooled connection before the router read the end', async () => {
    // A stalled application process: a switch ends its lease holders, and when the process
    // wakes its next calls may go out on those connections before it reads their end. Here the
    // router's sockets stop reading while the node ends their sessions, as a stopped process's do.
    const router = await Router.connect({ catalog: access.catalog, poolSizePerNode: 2 });
    const admin = await connectTo(cluster.servers[0]!.connection);
    const waitForRead = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    try {
      const key = keyOfSlot(0, SLOTS);
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
