import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { startDashboard } from '../../src/dashboard/server.js';
import { recordSlotLoad } from '../../src/catalog/slotLoad.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;

interface ReportJson {
  source: string;
  routers: number;
  nodes: { node: string; share: number; ratio: number | null; weighted_share: number }[];
  slots: { slot: number; owner: string; load: number; rows_written_per_sec: number; p50_ms: number; p99_ms: number }[];
}

describe('load per slot and per node (load-report)', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: string;
  beforeAll(async () => {
    cluster = await startTestServers(3, 'lr');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    catalog = catalogUrl(cluster.servers[0]!.connection);
    await initCluster(access, SLOTS);
    for (let index = 0; index < 3; index++) await addNode(access, { name: `n${index + 1}`, connection: cluster.servers[index]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('routers report calls, rows written and latency per slot; the report shows the node that takes most of them', async () => {
    const router = await Router.connect({ catalog: access.catalog, loadReportMs: 200 });
    const keysOn = (node: string): number[] => Array.from({ length: 300 }, (_, i) => i + 1).filter((key) => router.routeOf(router.slotOf(key)).owner === node);
    try {
      for (let key = 1; key <= 300; key++) await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 0)', [key]);
      // Skewed: 4 calls on n1's keys for every call on another node's.
      const hot = keysOn('n1');
      const cold = [...keysOn('n2'), ...keysOn('n3')];
      for (let round = 0; round < 150; round++) {
        for (let i = 0; i < 4; i++) await router.query(hot[(round * 4 + i) % hot.length]!, 'SELECT v FROM kv WHERE id = $1', [hot[(round * 4 + i) % hot.length]!]);
        await router.query(cold[round % cold.length]!, 'UPDATE kv SET v = v + 1 WHERE id = $1', [cold[round % cold.length]!]);
      }
    } finally {
      await router.close();
    }
    const result = await runCli(['--catalog', catalog, '--json', 'load-report', '--window', '5m']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout.trim().split('\n').pop()!) as ReportJson;
    expect(report.source).toBe('routers');
    expect(report.routers).toBe(1);
    const n1 = report.nodes.find((node) => node.node === 'n1')!;
    // n1: its third of the inserts plus 600 of 750 later calls: 700 of 1050 (weighted share a third).
    expect(n1.share).toBeGreaterThan(0.6);
    expect(n1.ratio).toBeGreaterThan(1.8);
    expect(n1.weighted_share).toBeCloseTo(1 / 3, 5);
    expect(report.nodes.reduce((sum, node) => sum + node.share, 0)).toBeCloseTo(1, 5);
    expect(report.slots[0]!.owner).toBe('n1');
    expect(report.slots.every((slot) => slot.p99_ms >= slot.p50_ms && slot.p50_ms > 0)).toBe(true);
    // Rows written: the inserts on every slot, the updates only off n1.
    const written = report.slots.reduce((sum, slot) => sum + slot.rows_written_per_sec, 0);
    expect(written).toBeGreaterThan(0);
    const text = await runCli(['--catalog', catalog, 'load-report', '--window', '5m', '--top', '3']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^Load \(calls\/s\) reported by 1 router\(s\) over the last 300 s/);
    expect(text.stdout).toMatch(/Busiest slots \(3 of \d+ with load\)/);

    // The dashboard shows the same: a heat map over the slot map (calls/s per slot) and each node against its share.
    const dashboard = await startDashboard({ access, host: '127.0.0.1', port: 0, controlToken: 'load-report-test-token' });
    try {
      type State = { load: { routers: number; calls_per_sec: number[]; p99_ms: number[]; nodes: { node: string; share: number }[] } | null; autopilot: { holder: string | null; decisions: unknown[] } | null };
      // The page's state is composed at each catalog poll; the load is read with the slower node poll.
      let state: State = { load: null, autopilot: null };
      for (const deadline = Date.now() + 15_000; state.load === null && Date.now() < deadline;) {
        state = await (await fetch(`${dashboard.url}api/state`)).json() as State;
        if (state.load === null) await new Promise((resolve) => setTimeout(resolve, 250));
      }
      if (state.load === null) throw new Error('the dashboard showed no load within 15 s');
      expect(state.load.routers).toBe(1);
      expect(state.load.calls_per_sec).toHaveLength(SLOTS);
      const busiest = state.load.calls_per_sec.indexOf(Math.max(...state.load.calls_per_sec));
      expect(busiest).toBe(report.slots[0]!.slot);
      expect(state.load.p99_ms[busiest]).toBeGreaterThan(0);
      expect(state.load.nodes.find((node) => node.node === 'n1')!.share).toBeGreaterThan(0.6);
      expect(state.autopilot).toEqual({ holder: null, lease_until: null, decisions: [] });
      const page = await (await fetch(`${dashboard.url}app.js`)).text();
      expect(page).toContain('function renderLoad(state, styles)');
    } finally {
      await dashboard.close();
    }
  });

  it('without routers, samples the nodes\' own counters per leaf and sees the busy node', async () => {
    // Traffic straight to n2 (no router): scans and updates on its leaves only.
    const direct = new pg.Pool({ ...cluster.servers[1]!.connection, max: 2 });
    let running = true;
    const traffic = (async () => {
      while (running) {
        await direct.query('UPDATE kv SET v = v + 1 WHERE id IN (SELECT id FROM kv ORDER BY id LIMIT 5)');
        await direct.query('SELECT count(*) FROM kv');
      }
    })();
    try {
      const result = await runCli(['--catalog', catalog, '--json', 'load-report', '--source', 'nodes', '--sample', '3s']);
      expect(result.code).toBe(0);
      const report = JSON.parse(result.stdout.trim().split('\n').pop()!) as ReportJson;
      expect(report.source).toBe('nodes');
      const shares = new Map(report.nodes.map((node) => [node.node, node.share]));
      expect(shares.get('n2')).toBeGreaterThan(0.9);
      expect(report.slots.every((slot) => slot.owner === 'n2')).toBe(true);
      expect(report.slots.length).toBeGreaterThan(0);
    } finally {
      running = false;
      await traffic;
      await direct.end();
    }
    // The catalog keeps the routers' samples: a few rows per router per period, only slots with calls.
    const client = await connectTo(cluster.servers[0]!.connection);
    try {
      const rows = await client.query<{ slots: string; periods: string; zero: string }>('SELECT count(DISTINCT slot)::text AS slots, count(DISTINCT period_start)::text AS periods, count(*) FILTER (WHERE calls = 0)::text AS zero FROM reshard.slot_load');
      expect(Number(rows.rows[0]!.slots)).toBeLessThanOrEqual(SLOTS);
      expect(Number(rows.rows[0]!.periods)).toBeGreaterThan(0);
      expect(rows.rows[0]!.zero).toBe('0');
      // Each report prunes samples older than the retention (here 1 ms: every earlier one), never its own.
      await recordSlotLoad(client, { routerId: '00000000-0000-0000-0000-000000000001', periodStart: new Date(), periodMs: 1_000, samples: [{ slot: 3, calls: 7, rowsWritten: 0, p50Ms: 1, p99Ms: 2 }], retentionMs: 1 });
      const left = await client.query<{ router_id: string; calls: string }>('SELECT router_id::text, calls::text FROM reshard.slot_load');
      expect(left.rows).toEqual([{ router_id: '00000000-0000-0000-0000-000000000001', calls: '7' }]);
    } finally {
      await client.end();
    }
  });
});
