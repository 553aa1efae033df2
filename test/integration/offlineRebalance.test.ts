import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { inspectSlot } from '../../src/admin/inspectSlot.js';
import { withCatalog } from '../../src/plumbing/clusterAccess.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { listMoves } from '../../src/catalog/migrationRuns.js';
import { listNodes } from '../../src/catalog/nodes.js';
import { readJournal } from '../../src/catalog/journal.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 64;
const USERS = 5_000;

describe('offline rebalance on real PostgreSQL', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    cluster = await startTestServers(4);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('grows 3 → 4 moving exactly a quarter of the slots, shrinks back and grows again on the same server, losing nothing', async () => {
    const access = await createDemoCluster(cluster.servers, 3, SLOTS);
    const rowsLoaded = await loadDemoRows(access, USERS);
    expect(rowsLoaded).toBe(USERS * 2);
    const before = await verifyCluster(access);
    expect(before.problems).toEqual([]);
    expect(before.rowsTotal).toBe(USERS * 2);

    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    const events: MigrationEvent[] = [];
    const grown = await rebalance(access, { mode: 'offline', dryRun: false, moveConcurrencyMax: 4, emit: (event) => events.push(event) });
    expect(grown.summary?.state).toBe('completed');
    expect(grown.plan.slotsMoved).toBe(SLOTS / 4);
    expect(grown.summary?.slotsMoved).toBe(SLOTS / 4);
    expect(grown.summary?.rowsMoved).toBeGreaterThan(0);
    expect(events.filter((event) => event.type === 'move_done')).toHaveLength(SLOTS / 4);

    const after = await verifyCluster(access);
    expect(after.problems).toEqual([]);
    expect(after.rowsTotal).toBe(USERS * 2);
    const slotMap = await withCatalog(access, readSlotMap);
    expect(slotMap.owners.filter((owner) => owner === 'n4')).toHaveLength(SLOTS / 4);
    expect(after.epoch).toBeGreaterThan(before.epoch);

    // Every move's journal shows each step begun before it was done, in order.
    const journal = await withCatalog(access, (catalog) => readJournal(catalog, grown.summary!.migrationId));
    const moves = await withCatalog(access, (catalog) => listMoves(catalog, grown.summary!.migrationId));
    expect(moves.every((move) => move.state === 'done')).toBe(true);
    const firstSlot = moves[0]!.slot;
    expect(journal.filter((entry) => entry.slot === firstSlot).map((entry) => `${entry.step}:${entry.action}`)).toEqual([
      'prepare:begin', 'prepare:done', 'freeze:begin', 'freeze:done', 'copy:begin', 'copy:done', 'verify:begin', 'verify:done',
      'attach:begin', 'attach:done', 'switch:begin', 'switch:done', 'cleanup:begin', 'cleanup:done',
    ]);

    // A row of a moved slot is now served by n4 and rejected (no partition) on its old owner.
    const movedSlot = moves[0]!;
    const onOwner = await inspectSlot(access, movedSlot.slot);
    expect(onOwner.owner).toBe('n4');
    expect(onOwner.tables.map((table) => table.attached)).toEqual([true, true]);
    expect(onOwner.tables[0]!.rows).toBeGreaterThan(0);
    expect(onOwner.tables[0]!.checksum).toMatch(/^-?\d+$/);
    const onOldOwner = await inspectSlot(access, movedSlot.slot, movedSlot.source);
    expect(onOldOwner.tables.map((table) => table.rows)).toEqual([0, 0]);
    const n4 = await connectTo(cluster.servers[3]!.connection);
    const rowsOnN4 = await n4.query<{ count: string }>('SELECT count(*) FROM users');
    expect(Number(rowsOnN4.rows[0]!.count)).toBeGreaterThan(0);
    await n4.end();
    expect(movedSlot.target).toBe('n4');

    const removed = await removeNode(access, 'n4');
    expect(removed.state).toBe('draining');
    const shrunk = await rebalance(access, { mode: 'offline', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(shrunk.summary?.state).toBe('completed');
    expect(shrunk.plan.slotsMoved).toBe(SLOTS / 4);
    const final = await verifyCluster(access);
    expect(final.problems).toEqual([]);
    expect(final.rowsTotal).toBe(USERS * 2);
    const finalMap = await withCatalog(access, readSlotMap);
    expect(finalMap.owners).not.toContain('n4');
    expect((await withCatalog(access, (catalog) => listNodes(catalog))).map((node) => node.name)).toEqual(['n1', 'n2', 'n3']);

    // The drained server kept its empty parents; adding it again under its old name reuses it.
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    const regrown = await rebalance(access, { mode: 'offline', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(regrown.summary?.state).toBe('completed');
    expect(regrown.plan.slotsMoved).toBe(SLOTS / 4);
    const again = await verifyCluster(access);
    expect(again.problems).toEqual([]);
    expect(again.rowsTotal).toBe(USERS * 2);
  });
});
