import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { waitFor } from '../../src/plumbing/waitFor.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { leftoverReplicationObjects } from '../support/leftovers.js';
import { createDemoCluster } from '../support/cluster.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const USERS = 20_000;

describe('status and resume after the coordinator is killed mid-stream', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'st');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('shows each move\'s step, bytes, lag and age, then resumes to a verified cluster with no leftovers', async () => {
    const url = catalogUrl(cluster.servers[0]!.connection);
    // One batch at a time, copies slowed: the first batch streams while the second copies.
    const coordinator = spawn(process.execPath, [RESHARD_BIN, 'rebalance', '--json', '--concurrency', '1', '--max-copy-rate', '300kB', '--catalog', url], { stdio: 'ignore' });
    try {
      await waitFor('a batch that streams while another copies', async () => withCatalog(access, async (catalog) => {
        const result = await catalog.query<{ streaming: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM reshard.journal WHERE step = 'stream' AND action = 'done')
              AND EXISTS (SELECT 1 FROM reshard.move WHERE state = 'running' AND bytes_copied < bytes_total) AS streaming`);
        return result.rows[0]?.streaming ? true : undefined;
      }), { timeoutMs: 90_000, pollMs: 100, fix: 'the rebalance did not reach its second batch' });
    } finally {
      coordinator.kill('SIGKILL');
    }
    await new Promise((resolve) => coordinator.once('exit', resolve));

    const status = await runCli(['status', '--json', '--catalog', url]);
    expect(status.stderr).toBe('');
    const report = JSON.parse(status.stdout.trim().split('\n').at(-1)!) as {
      migration: { state: string; interrupted: boolean };
      moves: { slot: number; step: string | null; state: string; bytes_copied: number; bytes_total: number; lag_bytes: number | null; age_seconds: number | null }[];
    };
    expect(report.migration).toMatchObject({ state: 'running', interrupted: true });
    const streamed = report.moves.filter((move) => move.step === 'stream' && move.bytes_copied === move.bytes_total);
    expect(streamed.length).toBeGreaterThan(0);
    for (const move of streamed) {
      expect(move.lag_bytes).not.toBeNull();
      expect(move.lag_bytes!).toBeGreaterThanOrEqual(0);
      expect(move.age_seconds!).toBeGreaterThan(0);
    }
    const text = await runCli(['status', '--catalog', url]);
    expect(text.stdout).toMatch(/interrupted: run `reshard resume`/);
    expect(text.stdout).toMatch(/slot +from +to +state +step +bytes +lag +age/);

    const resumed = await runCli(['resume', '--json', '--catalog', url]);
    expect(resumed.stderr).toBe('');
    expect(JSON.parse(resumed.stdout.trim().split('\n').at(-1)!)).toMatchObject({ state: 'completed' });
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
    expect(verified.rowsTotal).toBe(USERS * 2);
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
  });
});
