import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { prepareRebalance, rebalance } from '../../src/admin/rebalance.js';
import { rollbackMigration } from '../../src/admin/rollbackMigration.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { getMigration, listMigrations } from '../../src/catalog/migrationRuns.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { ReshardError } from '../../src/core/errors.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { leftoverReplicationObjects } from '../support/leftovers.js';
import { createDemoCluster } from '../support/cluster.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const USERS = 2_000;

async function owners(access: ClusterAccess): Promise<string[]> {
  return withCatalog(access, async (catalog) => (await readSlotMap(catalog)).owners.map((owner) => owner!));
}

describe('rollback on real PostgreSQL', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let ownersBefore: string[];
  beforeAll(async () => {
    cluster = await startTestServers(4, 'rb');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
    ownersBefore = await owners(access);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('undoes a migration that never ran its moves, in place', async () => {
    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    expect(prepared.migrationId).toBeDefined();
    const result = await rollbackMigration(access, { emit: () => {}, moveConcurrencyMax: 4 });
    expect(result.migrationId).toBe(prepared.migrationId);
    expect(result.undoneSlots).toHaveLength(SLOTS / 4);
    expect(result.movedBackSlots).toEqual([]);
    expect(result.moveBack).toBeUndefined();
    expect(await owners(access)).toEqual(ownersBefore);
    expect((await withCatalog(access, (catalog) => getMigration(catalog, prepared.migrationId!))).state).toBe('rolled_back');
    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
  });

  it('moves every switched slot of a completed online migration back', async () => {
    const grown = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(grown.summary?.state).toBe('completed');
    expect(await owners(access)).not.toEqual(ownersBefore);

    const result = await rollbackMigration(access, { emit: () => {}, moveConcurrencyMax: 4 });
    expect(result.migrationId).toBe(grown.summary!.migrationId);
    expect(result.undoneSlots).toEqual([]);
    expect(result.movedBackSlots).toHaveLength(SLOTS / 4);
    expect(result.moveBack?.state).toBe('completed');
    expect(await owners(access)).toEqual(ownersBefore);
    const migrations = await withCatalog(access, (catalog) => listMigrations(catalog, 2));
    expect(migrations.map((migration) => migration.state)).toEqual(['completed', 'rolled_back']);
    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    expect(report.rowsTotal).toBe(USERS * 2);
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
  });

  it('refuses to roll back a migration that is not the latest, changing nothing', async () => {
    const latest = await withCatalog(access, (catalog) => listMigrations(catalog, 1));
    const before = await owners(access);
    const error = await rollbackMigration(access, { migrationId: latest[0]!.id - 1, emit: () => {}, moveConcurrencyMax: 4 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ReshardError);
    expect((error as ReshardError).message).toMatch(/is not the latest/);
    expect(await owners(access)).toEqual(before);
  });

  it('moves one slot back from the command line (offline mover)', async () => {
    const grown = await rebalance(access, { mode: 'offline', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(grown.summary?.state).toBe('completed');
    const afterGrow = await owners(access);
    const slot = afterGrow.findIndex((owner, index) => owner !== ownersBefore[index]);
    expect(slot).toBeGreaterThanOrEqual(0);

    const url = catalogUrl(cluster.servers[0]!.connection);
    const cli = await runCli(['rollback', '--slot', String(slot), '--json', '--catalog', url]);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    const summary = JSON.parse(cli.stdout.trim().split('\n').at(-1)!) as { moved_back_slots: number[]; move_back: { state: string } };
    expect(summary.moved_back_slots).toEqual([slot]);
    expect(summary.move_back.state).toBe('completed');
    const afterRollback = await owners(access);
    expect(afterRollback[slot]).toBe(ownersBefore[slot]);
    expect(afterRollback.filter((owner, index) => owner !== afterGrow[index])).toHaveLength(1);
    expect((await verifyCluster(access)).problems).toEqual([]);

    // The latest migration is now the move back of that slot; rolling back twice in a row is refused.
    const again = await runCli(['rollback', '--migration', '1', '--catalog', url]);
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim()).toMatch(/^reshard: error: migration 1 is not the latest \(\d+ is\)\. Fix: roll back migration \d+ first$/);
  });
});
