import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readJournal } from '../../src/catalog/journal.js';
import { listMoves } from '../../src/catalog/migrationRuns.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { ONLINE_LIMITS_DEFAULT } from '../../src/mover/onlineBatch.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { leftoverReplicationObjects } from '../support/leftovers.js';
import { createDemoCluster } from '../support/cluster.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 32;
const USERS = 4_000;

describe('online rebalance (logical replication) on real PostgreSQL', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'on');
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('grows 3 → 4 and shrinks back with one subscription per node pair, leaving no replication objects', async () => {
    const access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });

    // Cutover groups of 4 (the default is slot by slot).
    const grown = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {}, onlineLimits: { ...ONLINE_LIMITS_DEFAULT, cutoverSlotsMax: 4 } });
    expect(grown.summary?.state).toBe('completed');
    expect(grown.summary?.slotsMoved).toBe(SLOTS / 4);
    expect(grown.summary?.pausesMs).toHaveLength(SLOTS / 4);
    expect(Math.max(...grown.summary!.pausesMs)).toBeLessThan(3_000);
    const moves = await withCatalog(access, (catalog) => listMoves(catalog, grown.summary!.migrationId));
    expect(moves.every((move) => move.state === 'done' && move.pauseMs !== undefined)).toBe(true);

    await expectCutoverGroups(access, grown.summary!.migrationId, 4);

    const afterGrow = await verifyCluster(access);
    expect(afterGrow.problems).toEqual([]);
    expect(afterGrow.rowsTotal).toBe(USERS * 2);
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);

    await removeNode(access, 'n4');
    // Groups of 3: the batches (up to 16 slots) end with a smaller group. Each batch cuts over once caught up,
    // while the others may still copy.
    const shrunk = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {},
      onlineLimits: { ...ONLINE_LIMITS_DEFAULT, cutoverSlotsMax: 3, cutoverWhileCopying: true } });
    expect(shrunk.summary?.state).toBe('completed');
    await expectCutoverGroups(access, shrunk.summary!.migrationId, 3);
    const afterShrink = await verifyCluster(access);
    expect(afterShrink.problems).toEqual([]);
    expect(afterShrink.rowsTotal).toBe(USERS * 2);
    expect((await withCatalog(access, readSlotMap)).owners).not.toContain('n4');
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
  });
});

/**
 * Every moved slot switched in exactly one cutover group of at most `groupMax` slots, all of one
 * batch; a group's slots switched at one epoch (one catalog statement) and saw one pause, and
 * different groups switched at different epochs.
 */
async function expectCutoverGroups(access: ClusterAccess, migrationId: number, groupMax: number): Promise<void> {
  const moves = await withCatalog(access, (catalog) => listMoves(catalog, migrationId));
  const journal = await withCatalog(access, (catalog) => readJournal(catalog, migrationId));
  const switchedAt = new Map<number, { epoch: number; group: number[] }>();
  for (const entry of journal.filter((candidate) => candidate.step === 'switch' && candidate.action === 'done')) {
    const group = (entry.detail?.['switchedTogether'] as number[] | undefined) ?? [entry.slot!];
    expect(group).toContain(entry.slot);
    switchedAt.set(entry.slot!, { epoch: Number(entry.detail?.['epoch']), group });
  }
  expect([...switchedAt.keys()].sort((a, b) => a - b)).toEqual(moves.map((move) => move.slot).sort((a, b) => a - b));
  const groups = new Map<number, number[]>();
  for (const [slot, { epoch, group }] of switchedAt) {
    expect(group.length).toBeLessThanOrEqual(groupMax);
    groups.set(epoch, [...(groups.get(epoch) ?? []), slot]);
    // Same group, same epoch and same record of it on every member.
    for (const member of group) expect(switchedAt.get(member)).toEqual({ epoch, group });
  }
  for (const slots of groups.values()) {
    const members = moves.filter((move) => slots.includes(move.slot));
    expect(new Set(members.map((move) => `${move.source}→${move.target}`)).size).toBe(1);
    expect(new Set(members.map((move) => move.pauseMs)).size).toBe(1);
  }
  // Some group held more than one slot (the batches here have several).
  expect(Math.max(...[...groups.values()].map((slots) => slots.length))).toBeGreaterThan(1);
  // The pause's sequential round trips, for a group of any size: the catalog's freeze, the fence (with the replay
  // wait), the two sums at once, and the switch with its own begin. More only when something waited (a fence
  // retried, an older router's acknowledgement), hence the median.
  const roundTrips = [...new Map(journal.filter((entry) => entry.step === 'switch' && entry.action === 'done')
    .map((entry) => [Number(entry.detail?.['epoch']), Number((entry.detail?.['pauseRoundTrips'] as Record<string, number> | undefined)?.['switched'])])).values()]
    .sort((a, b) => a - b);
  expect(roundTrips[Math.floor(roundTrips.length / 2)]).toBe(4);
}
