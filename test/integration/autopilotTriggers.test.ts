import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { autopilotDryRun, runAutopilotOnce } from '../../src/admin/autopilot.js';
import { AUTOPILOT_DEFAULTS, type AutopilotSettings } from '../../src/admin/autopilotSettings.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { listAutopilotDecisions } from '../../src/catalog/autopilotDecisions.js';
import { listNodes } from '../../src/catalog/nodes.js';
import { measureSpace } from '../../src/coordinator/nodeSpaces.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const ROWS = 30_000;

/** Bytes and headroom only: the load floor is out of reach (no traffic here anyway), one evaluation sustains. */
const SETTINGS: AutopilotSettings = {
  ...AUTOPILOT_DEFAULTS, sustainPeriods: 1, loadFloor: 1e12, bytesTolerance: 0.2, bytesFloor: 1_048_576, headroomFraction: 0.1,
  cooldownMs: 0, sampleMs: 200, moveConcurrencyMax: 2, movesMax: 8,
};

describe('autopilot: triggers by bytes beyond the weighted share and by disk headroom', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    cluster = await startTestServers(2, 'apt');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, pad text NOT NULL' });
    // Rows only in n1's slots: n1 holds nearly all the bytes with half the slots.
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], loadReportMs: 0 });
    const keys: number[] = [];
    try {
      for (let key = 1; keys.length < ROWS; key++) if (router.routeOf(router.slotOf(key)).owner === 'n1') keys.push(key);
    } finally {
      await router.close();
    }
    const n1 = await connectTo(cluster.servers[0]!.connection);
    try {
      await n1.query("INSERT INTO kv SELECT k, repeat(md5(k::text), 4) FROM unnest($1::bigint[]) k", [keys]);
    } finally {
      await n1.end();
    }
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('a node beyond its share of bytes (threshold and floor) moves slots by bytes, journaled with its numbers; sustained over evaluations', async () => {
    // Two evaluations in a row are needed: one-off, it says so and does nothing.
    const waiting = await autopilotDryRun(access, { ...SETTINGS, sustainPeriods: 2 });
    expect(waiting.action).toBe('none');
    expect(waiting.reason).toMatch(/n1 \(bytes\) over its share but not for 2 periods in a row yet/);

    const dry = await autopilotDryRun(access, SETTINGS);
    const trigger = dry.triggers.find((candidate) => candidate.kind === 'bytes' && candidate.node === 'n1');
    expect(trigger?.fired).toBe(true);
    expect(dry.triggers.find((candidate) => candidate.kind === 'bytes' && candidate.node === 'n2')?.fired).toBe(false);
    expect(dry.action).toBe('start-bytes');
    expect(dry.reason).toMatch(/^move \d+ slot\(s\) by bytes: slot \d+ n1→n2/);
    expect(dry.plan!.moves.every((move) => move.from === 'n1' && move.to === 'n2')).toBe(true);

    const outcome = await runAutopilotOnce(access, SETTINGS, { emit: () => {} });
    expect(outcome.summary?.state).toBe('completed');
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const [finish, start] = await listAutopilotDecisions(catalog, 2);
      expect(start?.kind).toBe('start');
      expect(start?.acted).toBe(true);
      expect(start?.summary).toMatch(/by bytes: .* — n1: over its share in all 1 periods \(bytes\/share [0-9.]+ > 1\.20, excess [0-9.]+ > floor 1048576\.00\)/);
      const journaled = (start!.details['triggers'] as { kind: string; node: string; fired: boolean; loads: number[]; fairLoads: number[] }[]).find((entry) => entry.kind === 'bytes' && entry.node === 'n1')!;
      expect(journaled.fired).toBe(true);
      expect(journaled.loads[0]! - journaled.fairLoads[0]!).toBeGreaterThan(1_048_576);
      expect(finish?.kind).toBe('finish');
    } finally {
      await catalog.end();
    }
    // Within its share of bytes now: nothing fires.
    const after = await autopilotDryRun(access, SETTINGS);
    expect(after.triggers.filter((candidate) => candidate.kind === 'bytes' && candidate.fired)).toEqual([]);
    expect(after.action).toBe('none');
  }, 180_000);

  it('a node below its disk headroom moves slots off at once (before any other trigger), to a node with room', async () => {
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const [n2] = (await listNodes(catalog)).filter((node) => node.name === 'n2');
      const used = (await measureSpace(n2!, noPasswords)).usedBytes;
      // 5 % free of its capacity, where 10 % must stay free.
      await catalog.query('UPDATE reshard.node SET capacity_bytes = $1 WHERE name = $2', [Math.round(used / 0.95), 'n2']);
      const dry = await autopilotDryRun(access, { ...SETTINGS, sustainPeriods: 3 });
      const trigger = dry.triggers.find((candidate) => candidate.kind === 'headroom' && candidate.node === 'n2');
      expect(trigger?.fired).toBe(true);
      expect(trigger?.reason).toMatch(/below its 10 % headroom: .* to move off at once/);
      // Headroom does not wait for sustained periods.
      expect(dry.action).toBe('start-headroom');
      expect(dry.plan!.moves.length).toBeGreaterThan(0);
      expect(dry.plan!.moves.every((move) => move.from === 'n2' && move.to === 'n1')).toBe(true);

      const outcome = await runAutopilotOnce(access, { ...SETTINGS, sustainPeriods: 3 }, { emit: () => {} });
      expect(outcome.summary?.state, JSON.stringify({ error: outcome.error, reason: outcome.evaluation.reason })).toBe('completed');
      const [, start] = await listAutopilotDecisions(catalog, 2);
      expect(start?.summary).toMatch(/by headroom: .* — n2: .* free of .*, below its 10 % headroom/);
      const journaled = (start!.details['triggers'] as { kind: string; node: string; usedBytes: number; limitBytes: number }[]).find((entry) => entry.kind === 'headroom' && entry.node === 'n2')!;
      expect(journaled.usedBytes).toBeGreaterThan(journaled.limitBytes);
      const after = await autopilotDryRun(access, { ...SETTINGS, sustainPeriods: 3 });
      expect(after.triggers.find((candidate) => candidate.kind === 'headroom' && candidate.node === 'n2')?.fired).toBe(false);
    } finally {
      await catalog.end();
    }
  }, 180_000);
});
