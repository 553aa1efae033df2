import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { listMoves } from '../../src/catalog/migrationRuns.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { withCatalog } from '../../src/plumbing/clusterAccess.js';
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

    const grown = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(grown.summary?.state).toBe('completed');
    expect(grown.summary?.slotsMoved).toBe(SLOTS / 4);
    expect(grown.summary?.pausesMs).toHaveLength(SLOTS / 4);
    expect(Math.max(...grown.summary!.pausesMs)).toBeLessThan(3_000);
    const moves = await withCatalog(access, (catalog) => listMoves(catalog, grown.summary!.migrationId));
    expect(moves.every((move) => move.state === 'done' && move.pauseMs !== undefined)).toBe(true);

    const afterGrow = await verifyCluster(access);
    expect(afterGrow.problems).toEqual([]);
    expect(afterGrow.rowsTotal).toBe(USERS * 2);
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);

    await removeNode(access, 'n4');
    const shrunk = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(shrunk.summary?.state).toBe('completed');
    const afterShrink = await verifyCluster(access);
    expect(afterShrink.problems).toEqual([]);
    expect(afterShrink.rowsTotal).toBe(USERS * 2);
    expect((await withCatalog(access, readSlotMap)).owners).not.toContain('n4');
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
  });
});
