import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { freezeSlotsInCatalog } from '../../src/catalog/slotFreeze.js';
import { SLOT_MAP_CHANNEL, setSlotState, switchSlotsOwner } from '../../src/catalog/slotMap.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;

/** Waits (at most 5 s) until `check` holds. */
async function eventually(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('the router did not follow within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('a router follows freezes and switches from their notifications', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    // Two servers: the catalog and n1 on one, n2 on the other.
    cluster = await startTestServers(2, 'mc', undefined, 'stock');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('applies a freeze, a switch and an unfreeze without reading the map, and reads it for anything else', async () => {
    // Long lease: no periodic read of the map during the test.
    const router = await Router.connect({ catalog: cluster.servers[0]!.connection, passwords: noPasswords, leaseMs: 120_000 });
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const slot = 3;
      const { owner: from, frozen: frozenAtFirst } = router.routeOf(slot);
      const to = from === 'n1' ? 'n2' : 'n1';
      expect(frozenAtFirst).toBe(false);
      // Every read of the map fails from here on (a column it selects is gone): what the router learns comes from the notifications.
      await catalog.query('ALTER TABLE reshard.node RENAME COLUMN params TO params_hidden');
      const frozen = await freezeSlotsInCatalog(catalog, [slot]);
      await eventually(() => router.routeOf(slot).frozen);
      expect(router.epoch).toBe(frozen.epoch);
      const switched = await switchSlotsOwner(catalog, [slot], from, to);
      await eventually(() => router.routeOf(slot).owner === to);
      expect(router.routeOf(slot)).toEqual({ owner: to, frozen: false, epoch: switched });
      const refrozen = await setSlotState(catalog, slot, 'frozen');
      await eventually(() => router.routeOf(slot).frozen);
      const thawed = await setSlotState(catalog, slot, 'active');
      await eventually(() => !router.routeOf(slot).frozen);
      expect([router.epoch, refrozen]).toEqual([thawed, switched + 1]);

      // An epoch the router did not see (bumped with a bare notification) leaves the next change unapplicable:
      // it must read the map, which fails, so it keeps the map it had.
      await catalog.query(`WITH bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 RETURNING epoch) SELECT pg_notify('${SLOT_MAP_CHANNEL}', epoch::text) FROM bumped`);
      await freezeSlotsInCatalog(catalog, [slot]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(router.routeOf(slot)).toEqual({ owner: to, frozen: false, epoch: thawed });

      // With the map readable again, the next change is read in full and the router catches up.
      await catalog.query('ALTER TABLE reshard.node RENAME COLUMN params_hidden TO params');
      const caughtUp = await setSlotState(catalog, 5, 'frozen');
      await eventually(() => router.epoch === caughtUp);
      expect(router.routeOf(slot).frozen).toBe(true);
      expect(router.routeOf(5).frozen).toBe(true);
    } finally {
      await catalog.query('ALTER TABLE reshard.node RENAME COLUMN params_hidden TO params').catch(() => {});
      await catalog.end();
      await router.close();
    }
  });

  it('hears a switch while its catalog session is busy (a notification has a session of its own)', async () => {
    const router = await Router.connect({ catalog: cluster.servers[0]!.connection, passwords: noPasswords, leaseMs: 120_000, name: 'busy' });
    const catalog = await connectTo(cluster.servers[0]!.connection);
    const blocker = await connectTo(cluster.servers[0]!.connection);
    try {
      const slot = 6;
      const { owner: from } = router.routeOf(slot);
      const to = from === 'n1' ? 'n2' : 'n1';
      // The router's acknowledgement of the freeze (an update of reshard.router) waits for this lock: its session stays busy.
      await blocker.query('BEGIN; LOCK TABLE reshard.router IN ACCESS EXCLUSIVE MODE');
      await setSlotState(catalog, slot, 'frozen');
      await eventually(() => router.routeOf(slot).frozen);
      const waiting = async (): Promise<boolean> => (await catalog.query(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'reshard router busy' AND wait_event_type = 'Lock'")).rowCount === 1;
      const deadline = Date.now() + 5_000;
      while (!(await waiting())) {
        if (Date.now() > deadline) throw new Error('the router\'s acknowledgement never waited for the lock');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const switched = await switchSlotsOwner(catalog, [slot], from, to);
      await eventually(() => router.routeOf(slot).owner === to);
      expect(router.routeOf(slot)).toEqual({ owner: to, frozen: false, epoch: switched });
      expect(await waiting()).toBe(true);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
      await catalog.end();
      await router.close();
    }
  });
});
