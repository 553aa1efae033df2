import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { autopilotDryRun, runAutopilotOnce } from '../../src/admin/autopilot.js';
import { AUTOPILOT_DEFAULTS, type AutopilotSettings } from '../../src/admin/autopilotSettings.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { AUTOPILOT_PLAN_ORIGIN, listAutopilotDecisions } from '../../src/catalog/autopilotDecisions.js';
import { getCluster } from '../../src/catalog/cluster.js';
import { createSlotExchangeMigration } from '../../src/catalog/slotExchanges.js';
import { splitSlot } from '../../src/admin/slotExchange.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { withCatalog } from '../../src/plumbing/clusterAccess.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotModulus, slotOwner } from '../../src/core/slotMap.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;

/** Load by routers over 2-s periods, one period over the share is enough here; bytes triggers out of reach. */
const SETTINGS: AutopilotSettings = {
  ...AUTOPILOT_DEFAULTS, periodMs: 2_000, sustainPeriods: 1, tolerance: 0.1, loadFloor: 1, cooldownMs: 0, bytesFloor: 1e15, moveConcurrencyMax: 1,
};

describe('autopilot: a slot hotter than a node\'s share is split, its high child placed on another node', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router;
  let running = true;
  let traffic: Promise<void> = Promise.resolve();
  let hotSlot = -1;
  const callErrors: string[] = [];
  beforeAll(async () => {
    cluster = await startTestServers(2, 'aps');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
    router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], loadReportMs: 200 });
    const firstKey = Array.from({ length: 100 }, (_, i) => i + 1).find((key) => router.routeOf(router.slotOf(key)).owner === 'n1')!;
    hotSlot = router.slotOf(firstKey);
    const hotKeys: number[] = [];
    for (let key = 1; hotKeys.length < 400; key++) if (router.slotOf(key) === hotSlot) hotKeys.push(key);
    for (const key of hotKeys) await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 0)', [key]);
    // Every call on one slot of n1: n1 carries all the load, that slot alone more than n1's half.
    traffic = (async () => {
      for (let index = 0; running; index++) {
        const key = hotKeys[index % hotKeys.length]!;
        await router.query(key, 'UPDATE kv SET v = v + 1 WHERE id = $1', [key]).catch((error: unknown) => { callErrors.push((error as Error).message); });
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 2_500));
  }, 120_000);
  afterAll(async () => {
    running = false;
    await traffic;
    await router?.close();
    await cluster?.stop();
  });

  it('splits the hot slot with `split --to`\'s entry point, journaled with its numbers', async () => {
    const dry = await autopilotDryRun(access, SETTINGS);
    expect(dry.triggers.find((trigger) => trigger.kind === 'load' && trigger.node === 'n1')?.fired).toBe(true);
    expect(dry.action).toBe('start-split');
    expect(dry.split).toMatchObject({ slot: hotSlot, from: 'n1', to: 'n2' });
    expect(dry.split!.load).toBeGreaterThan(dry.split!.fairLoad);
    expect(dry.reason).toMatch(new RegExp(`^split slot ${hotSlot} on n1: slot ${hotSlot} alone carries [0-9.]+ load, more than n1's fair share [0-9.]+: no move helps; split it, its high child to n2`));

    const outcome = await runAutopilotOnce(access, SETTINGS, { emit: () => {} });
    expect(outcome.error).toBeUndefined();
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const map = await readSlotMap(catalog);
      expect(slotModulus(map, hotSlot)).toBe(SLOTS * 2);
      expect(slotOwner(map, hotSlot)).toBe('n1');
      expect(slotOwner(map, hotSlot + SLOTS)).toBe('n2');
      const [finish, start] = await listAutopilotDecisions(catalog, 2);
      expect(start?.kind).toBe('start');
      expect(start?.summary).toMatch(new RegExp(`^split slot ${hotSlot} on n1: slot ${hotSlot} alone carries [0-9.]+ load, more than n1's fair share [0-9.]+`));
      expect((start!.details['split'] as { slot: number; load: number; fairLoad: number }).slot).toBe(hotSlot);
      expect(finish?.kind).toBe('finish');
      expect(finish?.acted).toBe(true);
      expect(finish?.summary).toMatch(new RegExp(`^split slot ${hotSlot} on n1 into slot ${hotSlot} \\(modulus ${SLOTS * 2}\\) and slot ${hotSlot + SLOTS} \\(modulus ${SLOTS * 2}\\): \\d+ rows, .*; slot ${hotSlot + SLOTS} moved to n2: migration \\d+ completed$`));
    } finally {
      await catalog.end();
    }
    // The rows are all there, split between the two nodes, and the traffic went on without a failed call.
    const counts = await Promise.all(cluster.servers.map(async (server) => {
      const client = await connectTo(server.connection);
      try {
        return Number((await client.query<{ count: string }>('SELECT count(*)::text AS count FROM kv')).rows[0]!.count);
      } finally {
        await client.end();
      }
    }));
    expect(counts[0]! + counts[1]!).toBe(400);
    expect(counts[1]).toBeGreaterThan(0);
    expect(callErrors).toEqual([]);
  }, 240_000);

  it('a split of its own left unfinished (the autopilot died after recording it) is finished by the next autopilot', async () => {
    const catalog = await connectTo(cluster.servers[0]!.connection);
    let slot = -1;
    try {
      const map = await readSlotMap(catalog);
      // A slot of n2 not split yet: what a crashed autopilot had started to split.
      slot = [...Array(SLOTS).keys()].find((candidate) => slotOwner(map, candidate) === 'n2' && slotModulus(map, candidate) === SLOTS)!;
      const plan = { kind: 'split' as const, slot, node: 'n2', replaced: [slot], replacements: [{ slot, modulus: SLOTS * 2 }, { slot: slot + SLOTS, modulus: SLOTS * 2 }], replacedModulus: SLOTS };
      await createSlotExchangeMigration(catalog, plan, (await getCluster(catalog)).epoch, 0, AUTOPILOT_PLAN_ORIGIN);
    } finally {
      await catalog.end();
    }
    const outcome = await runAutopilotOnce(access, SETTINGS, { emit: () => {} });
    expect(outcome.error).toBeUndefined();
    expect(outcome.evaluation.action).toBe('resume');
    const after = await connectTo(cluster.servers[0]!.connection);
    try {
      const map = await readSlotMap(after);
      expect(slotModulus(map, slot)).toBe(SLOTS * 2);
      expect(slotOwner(map, slot + SLOTS)).toBe('n2');
      const [finish, resume] = await listAutopilotDecisions(after, 2);
      expect(resume?.kind).toBe('resume');
      expect(finish?.kind).toBe('finish');
      expect(finish?.summary).toMatch(new RegExp(`^split of slot ${slot} finished \\(migration \\d+\\): \\d+ rows`));
      expect((await after.query<{ state: string }>(`SELECT state FROM reshard.migration ORDER BY id DESC LIMIT 1`)).rows[0]?.state).toBe('completed');
    } finally {
      await after.end();
    }
    expect(callErrors).toEqual([]);
  }, 240_000);

  it('split --to is one migration: each row copied once, the high child straight onto its node', async () => {
    const map = await withCatalog(access, (catalog) => readSlotMap(catalog));
    const slot = [...Array(SLOTS).keys()].find((candidate) => slotOwner(map, candidate) === 'n1' && slotModulus(map, candidate) === SLOTS)!;
    const migrationsBefore = await withCatalog(access, async (catalog) => Number((await catalog.query<{ n: string }>('SELECT count(*)::text AS n FROM reshard.migration')).rows[0]!.n));
    const events: MigrationEvent[] = [];
    const result = await splitSlot(access, { slot, to: 'n2', emit: (event) => events.push(event) });
    expect(result.moved).toMatchObject({ slot: slot + SLOTS, to: 'n2', migrationId: result.migrationId, state: 'completed' });
    expect(result.rowsCopied!.low + result.rowsCopied!.high).toBe(result.rows);
    const migrationsAfter = await withCatalog(access, async (catalog) => Number((await catalog.query<{ n: string }>('SELECT count(*)::text AS n FROM reshard.migration')).rows[0]!.n));
    expect(migrationsAfter).toBe(migrationsBefore + 1);
    const after = await withCatalog(access, (catalog) => readSlotMap(catalog));
    expect(slotOwner(after, slot)).toBe('n1');
    expect(slotOwner(after, slot + SLOTS)).toBe('n2');
    expect(callErrors).toEqual([]);
  }, 240_000);
});
