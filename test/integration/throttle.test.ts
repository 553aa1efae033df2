import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { listMigrations } from '../../src/catalog/migrations.js';
import { withCatalog, type ClusterAccess } from '../../src/coordinator/catalogAccess.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const USERS = 20_000;
/** One pipe chunk may pass before the cap has anything to space it from. */
const CHUNK_BYTES_MAX = 64 * 1024;

describe('copy rate cap on real PostgreSQL', () => {
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
});
