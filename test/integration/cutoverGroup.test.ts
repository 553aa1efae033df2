import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { getCluster } from '../../src/catalog/cluster.js';
import { freezeSlotsInCatalog } from '../../src/catalog/slotFreeze.js';
import { readSlotMap, switchSlotsOwner } from '../../src/catalog/slotMap.js';
import { fenceSlots, unfenceSlot } from '../../src/node/fence.js';
import { markSlotsMoved, nodeSlotState } from '../../src/node/slotState.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { keyOfSlot } from '../support/slotKeys.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;
const TABLES = [{ schema: 'public', name: 'kv', shardKey: ['id'] }];

/**
 * The pieces a cutover group is made of (issue 16): several slots frozen at one epoch, fenced in
 * one transaction, switched in one catalog statement — all of them or none — and recorded moved
 * on the source together.
 */
describe('cutover group primitives', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    // One server: the catalog and node n1 (owner of every slot).
    cluster = await startTestServers(1, 'cg');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('freezes several slots at one epoch (idempotent) and fences them in one transaction', async () => {
    const db = await connectTo(cluster.servers[0]!.connection);
    try {
      for (let slot = 0; slot < SLOTS; slot++) await db.query('INSERT INTO kv VALUES ($1, 0)', [keyOfSlot(slot, SLOTS)]);
      const before = (await getCluster(db)).epoch;
      const frozen = await freezeSlotsInCatalog(db, [2, 5, 6]);
      expect(frozen.epoch).toBe(before + 1);
      // Again: nothing changes, the same epoch.
      expect((await freezeSlotsInCatalog(db, [2, 5, 6])).epoch).toBe(frozen.epoch);
      // One more slot joins: the ones frozen keep their epoch, the new one is frozen at a new one.
      expect((await freezeSlotsInCatalog(db, [5, 7])).epoch).toBe(frozen.epoch + 1);
      const map = await readSlotMap(db);
      expect([2, 5, 6, 7].every((slot) => map.states[slot] === 'frozen')).toBe(true);
      expect([0, 1, 3, 4].every((slot) => map.states[slot] === 'active')).toBe(true);

      const fence = await fenceSlots(db, TABLES, [6, 2, 5], SLOTS, { epoch: frozen.epoch });
      expect(fence.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      for (const slot of [2, 5, 6]) {
        await expect(db.query('UPDATE kv SET v = v + 1 WHERE id = $1', [keyOfSlot(slot, SLOTS)])).rejects.toMatchObject({ code: 'RSM01' });
        expect(await nodeSlotState(db, slot)).toMatchObject({ state: 'frozen', epoch: frozen.epoch });
      }
      // Other slots go on.
      expect((await db.query('UPDATE kv SET v = v + 1 WHERE id = $1', [keyOfSlot(3, SLOTS)])).rowCount).toBe(1);
      for (const slot of [2, 5, 6]) await unfenceSlot(db, TABLES, slot, SLOTS, frozen.epoch);
      expect((await db.query('UPDATE kv SET v = v + 1 WHERE id = $1', [keyOfSlot(5, SLOTS)])).rowCount).toBe(1);
    } finally {
      await db.end();
    }
  });

  it('switches a group all or none, at one epoch, and records it moved on the source in one transaction', async () => {
    const db = await connectTo(cluster.servers[0]!.connection);
    try {
      // Two more nodes: other databases on the same server (only the catalog's switch and n1's records are looked at).
      for (const name of ['n2', 'n3']) {
        await db.query(`CREATE DATABASE cg_${name}`);
        await addNode(access, { name, connection: { ...cluster.servers[0]!.connection, database: `cg_${name}` } });
      }
      // Slot 1 goes to n3 first: a group naming it with n1 as the source must not switch at all.
      const single = await switchSlotsOwner(db, [1], 'n1', 'n3');
      const before = await readSlotMap(db);
      await expect(switchSlotsOwner(db, [0, 1, 3], 'n1', 'n2')).rejects.toThrow(/slot 1 is owned by n3, expected n1/);
      const unchanged = await readSlotMap(db);
      expect(unchanged.owners).toEqual(before.owners);
      expect((await getCluster(db)).epoch).toBe(single);

      const epoch = await switchSlotsOwner(db, [0, 3, 4], 'n1', 'n2');
      expect(epoch).toBe(single + 1);
      const after = await readSlotMap(db);
      expect([0, 1, 3, 4].map((slot) => after.owners[slot])).toEqual(['n2', 'n3', 'n2', 'n2']);
      // Idempotent: switched already, the current epoch and nothing bumped.
      expect(await switchSlotsOwner(db, [0, 3, 4], 'n1', 'n2')).toBe(epoch);
      expect((await getCluster(db)).epoch).toBe(epoch);

      await markSlotsMoved(db, [0, 3, 4], 'n2', epoch, 500);
      for (const slot of [0, 3, 4]) expect(await nodeSlotState(db, slot)).toMatchObject({ state: 'moved', epoch, owner: 'n2' });
    } finally {
      await db.end();
    }
  });
});
