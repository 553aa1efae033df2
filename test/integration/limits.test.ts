import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { listMigrations } from '../../src/catalog/migrationRuns.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import { measureNodeSpace } from '../../src/node/diskSpace.js';
import { readClusterSnapshot } from '../../src/admin/clusterSnapshot.js';

const SLOTS = 16;
const USERS = 20_000;
/** One pipe chunk may pass before the cap has anything to space it from. */
const CHUNK_BYTES_MAX = 64 * 1024;

describe('copy rate cap and disk headroom on real PostgreSQL', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'th');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  for (const mode of ['online', 'offline'] as const) {
    it(`keeps all copies of a ${mode} rebalance together under --max-copy-rate`, async () => {
      if (mode === 'online') await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
      else await removeNode(access, 'n4');
      const bytesPerSecMax = 1_000_000;
      const cli = await runCli(['rebalance', '--mode', mode, '--max-copy-rate', '1MB/s', '--json', '--catalog', catalogUrl(cluster.servers[0]!.connection)]);
      expect(cli.stderr).toBe('');
      const summary = JSON.parse(cli.stdout.trim().split('\n').at(-1)!) as { state: string; bytes_streamed: number; seconds: number };
      expect(summary.state).toBe('completed');
      expect(summary.bytes_streamed).toBeGreaterThan(4 * CHUNK_BYTES_MAX);
      // A lower bound only: the cap may make a copy slower, never faster.
      expect(summary.seconds).toBeGreaterThanOrEqual((summary.bytes_streamed - CHUNK_BYTES_MAX) / bytesPerSecMax);
      const report = await verifyCluster(access);
      expect(report.problems).toEqual([]);
      expect(report.rowsTotal).toBe(USERS * 2);
    });
  }

  it('refuses a rate that is not a size, changing nothing', async () => {
    const migrationsBefore = await withCatalog(access, (catalog) => listMigrations(catalog, 100));
    const cli = await runCli(['rebalance', '--max-copy-rate', 'fast', '--catalog', catalogUrl(cluster.servers[0]!.connection)]);
    expect(cli.code).toBe(2);
    expect(cli.stderr.trim()).toBe('reshard: error: --max-copy-rate must be a size like 500GB or 1.5TiB, got "fast". Fix: pass e.g. --max-copy-rate 500GB');
    expect(await withCatalog(access, (catalog) => listMigrations(catalog, 100))).toEqual(migrationsBefore);
  });

  it('leaves out the moves that would cross a node\'s headroom, says why, and moves the rest', async () => {
    const url = catalogUrl(cluster.servers[0]!.connection);
    const probe = await connectTo(cluster.servers[3]!.connection);
    // n4 was drained and retired by the offline shrink above; its empty parents go, so it can join afresh.
    await probe.query('DROP TABLE IF EXISTS orders, users');
    const { usedBytes } = await measureNodeSpace(probe, '203.0.113.1');
    await probe.end();
    const perSlot = (await verifyCluster(access)).rowsTotal > 0 ? await slotBytesAverage(access) : 0;
    expect(perSlot).toBeGreaterThan(0);
    // Room for about two slots under a 10 % headroom: a balanced grow would give n4 four.
    const capacity = Math.ceil((usedBytes + 2.5 * perSlot) / 0.9);
    const added = await runCli(['node', 'add', 'n4', '--url', catalogUrl(cluster.servers[3]!.connection), '--capacity', String(capacity), '--catalog', url]);
    expect(added.stderr).toBe('');

    const dry = await runCli(['rebalance', '--dry-run', '--json', '--catalog', url]);
    const plan = JSON.parse(dry.stdout.trim().split('\n').at(-1)!) as { slots_moved: number; deferred: { slot: number; reason: string }[] };
    expect(plan.deferred.length).toBeGreaterThan(0);
    expect(plan.slots_moved).toBeGreaterThan(0);
    expect(plan.slots_moved + plan.deferred.length).toBe(SLOTS / 4);
    expect(plan.deferred[0]!.reason).toMatch(/^n4 would hold .+ of .+, leaving less than the 10 % headroom$/);

    const run = await runCli(['rebalance', '--json', '--catalog', url]);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { state: string; slots_moved: number };
    expect(summary.state).toBe('completed');
    expect(summary.slots_moved).toBe(plan.slots_moved);
    expect((await verifyCluster(access)).problems).toEqual([]);

    // No room at all: one clear line, nothing recorded.
    const tight = await runCli(['rebalance', '--headroom', '99', '--catalog', url]);
    expect(tight.code).toBe(7);
    expect(tight.stderr.trim()).toMatch(/^reshard: error: no move fits the disk headroom: n4 would hold .+, leaving less than the 99 % headroom\. Fix: /);
  });
});

/** Average bytes of a slot (all tables), as the planner measures them. */
async function slotBytesAverage(access: ClusterAccess): Promise<number> {
  const slotBytes = await withCatalog(access, async (catalog) => (await readClusterSnapshot(catalog, access.passwords)).slotBytes);
  return slotBytes.reduce((sum, bytes) => sum + bytes, 0) / slotBytes.length;
}
