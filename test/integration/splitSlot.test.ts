/**
 * Split and merge of slots on their own node, online (issue 14): eight
 * clients write through a router (the consistency check's workload: inserts,
 * increments, deletes) while a slot is split, merged back by `reshard
 * rollback`, split again, and the cluster grows by a node with split slots in
 * its map; then every acknowledged write is present exactly once on its
 * slot's owner and counters are exact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { rollbackMigration } from '../../src/admin/rollbackMigration.js';
import { mergeSlot, splitSlot } from '../../src/admin/slotExchange.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { CHECK_TABLES } from '../../src/checker/checkTables.js';
import { verifyWorkload } from '../../src/checker/verifyWorkload.js';
import { Workload } from '../../src/checker/workload.js';
import { ReshardError } from '../../src/core/errors.js';
import { assertSlotMapValid, hasSlot, slotModulus, slotOfKeyIn } from '../../src/core/slotMap.js';
import { connectCatalog, withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { getCluster } from '../../src/catalog/cluster.js';
import { getNode } from '../../src/catalog/nodes.js';
import { createSlotExchangeMigration } from '../../src/catalog/slotExchanges.js';
import { listShardedTables } from '../../src/catalog/tables.js';
import { SLOT_EXCHANGE_STEPS } from '../../src/mover/slotExchangeSteps.js';
import { catalogStepJournal } from '../../src/mover/stepJournal.js';
import { StepRunner } from '../../src/mover/stepRunner.js';
import { connectNode } from '../../src/plumbing/connectNode.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/router.js';
import { leafName } from '../../src/node/leafName.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import { expectClusterClean } from '../support/cluster.js';

const SLOTS = 16;
const HOT_SLOT = 5;

/** "freeze 210 ms, copy 12 ms, …": each step's begin → done, from the journal. */
async function stepTimes(migrationId: number): Promise<string> {
  return withCatalog(accessOf!, async (catalog) => {
    const rows = await catalog.query<{ step: string; action: string; at: Date }>('SELECT step, action, at FROM reshard.journal WHERE migration_id = $1 ORDER BY id', [migrationId]);
    const begun = new Map<string, number>();
    const parts: string[] = [];
    for (const row of rows.rows) {
      if (row.action === 'begin') begun.set(row.step, row.at.getTime());
      if (row.action === 'done' && begun.has(row.step)) parts.push(`${row.step} ${row.at.getTime() - begun.get(row.step)!} ms`);
    }
    return parts.join(', ');
  });
}

let accessOf: ClusterAccess | undefined;

async function slotMapOf(access: ClusterAccess): ReturnType<typeof readSlotMap> {
  return withCatalog(access, (catalog) => readSlotMap(catalog));
}

describe('split and merge a slot online under 8 writing clients', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router | undefined;

  beforeAll(async () => {
    cluster = await startTestServers(4, 'sp');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    accessOf = access;
    await initCluster(access, SLOTS);
    for (const server of cluster.servers.slice(0, 3)) await addNode(access, { name: server.name, connection: server.connection });
    for (const table of CHECK_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
  });
  afterAll(async () => {
    await router?.close();
    await cluster?.stop();
  });

  it('dry-run prints the steps and changes nothing; a slot that does not exist is refused in one line', async () => {
    const before = await slotMapOf(access);
    const dry = await splitSlot(access, { slot: HOT_SLOT, dryRun: true });
    expect(dry.steps.map((step) => step.step)).toEqual(['prepare', 'copy', 'freeze', 'sync', 'attach', 'switch', 'cleanup']);
    expect(dry.replacements).toEqual([{ slot: HOT_SLOT, modulus: 2 * SLOTS }, { slot: HOT_SLOT + SLOTS, modulus: 2 * SLOTS }]);
    expect((await slotMapOf(access)).epoch).toBe(before.epoch);
    await expect(splitSlot(access, { slot: 99 })).rejects.toThrow(ReshardError);
    await expect(mergeSlot(access, { slot: 3 })).rejects.toThrow(/no sibling to merge with/);
    const cli = await runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), 'split', '--slot', String(HOT_SLOT), '--dry-run']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/Would split slot 5 \(modulus 16\) → slot 5 \(modulus 32\) and slot 21 \(modulus 32\)/);
  });

  it('loses no acknowledged write through split, merge (rollback), split again and a rebalance onto a new node', async () => {
    router = await Router.connect({ catalog: access.catalog, name: 'split test', poolSizePerNode: 8 });
    const workload = new Workload(router, { clients: 8, counters: 64, hotSlots: () => [HOT_SLOT] }, SLOTS);
    await workload.prepare();
    workload.start();
    await new Promise((resolve) => setTimeout(resolve, 800));

    const split = await splitSlot(access, { slot: HOT_SLOT });
    console.log(`split of slot ${HOT_SLOT}: ${split.rows} rows, writes paused ${split.pauseMs} ms; ${await stepTimes(split.migrationId!)}`);
    expect(split.rows).toBeGreaterThan(0);
    let map = await slotMapOf(access);
    assertSlotMapValid(map);
    expect(slotModulus(map, HOT_SLOT)).toBe(2 * SLOTS);
    expect(map.owners[HOT_SLOT + SLOTS]).toBe(map.owners[HOT_SLOT]);
    // The router learnt the split: keys of the high half route to the new slot.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const highKey = Array.from({ length: 1000 }, (_, i) => i + 1).find((id) => slotOfKeyIn(map, ['bigint'], [id]) === HOT_SLOT + SLOTS)!;
    expect(router.slotOf(highKey)).toBe(HOT_SLOT + SLOTS);
    // slot_of in the catalog agrees under the mixed map.
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const ids = Array.from({ length: 200 }, (_, i) => i + 1);
      const located = await catalog.query<{ id: string; slot: number }>("SELECT id::text, (SELECT slot FROM reshard.slot_of('reshard_check_items', id)) AS slot FROM unnest($1::bigint[]) AS id", [ids]);
      for (const row of located.rows) expect(row.slot).toBe(slotOfKeyIn(map, ['bigint'], [Number(row.id)]));
    } finally {
      await catalog.end();
    }
    await new Promise((resolve) => setTimeout(resolve, 500));

    // `reshard rollback` of a split merges the children back.
    const rolledBack = await rollbackMigration(access, { emit: () => {}, moveConcurrencyMax: 1 });
    expect(rolledBack.movedBackSlots).toEqual([HOT_SLOT]);
    map = await slotMapOf(access);
    expect(hasSlot(map, HOT_SLOT + SLOTS)).toBe(false);
    expect(map.slotModuli).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 500));

    // Split again, and a second slot too, then grow the cluster by one node with the mixed map.
    await splitSlot(access, { slot: HOT_SLOT });
    await splitSlot(access, { slot: 2 });
    await addNode(access, { name: cluster.servers[3]!.name, connection: cluster.servers[3]!.connection });
    const grow = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(grow.summary?.state).toBe('completed');
    map = await slotMapOf(access);
    assertSlotMapValid(map);
    const share = new Map<string, number>();
    for (const [slot, owner] of map.owners.entries()) if (owner !== undefined) share.set(owner, (share.get(owner) ?? 0) + SLOTS / slotModulus(map, slot));
    console.log(`hash-space share per node after the rebalance (in slots of ${SLOTS}): ${JSON.stringify(Object.fromEntries(share))}`);
    expect(share.get(cluster.servers[3]!.name) ?? 0).toBeGreaterThanOrEqual(3);
    for (const units of share.values()) expect(Math.abs(units - SLOTS / 4)).toBeLessThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 500));

    const log = await workload.stop();
    const report = await verifyWorkload(access, log);
    console.log(`writes: ${log.samples.length}, inserts ${report.insertsAcked}, increments ${report.incrementsAcked}, deletes ${report.deletesAcked}, client errors ${log.errors.length}`);
    expect(report.violations).toEqual([]);
    expect(log.errors.slice(0, 5)).toEqual([]);
    expect(report.insertsAcked).toBeGreaterThan(100);
    expect(report.incrementsAcked).toBeGreaterThan(100);
    await expectClusterClean(access);
  });

  /** Takes the first steps of a split of `slot` (through `lastStep`) and stops, as a crash there would. */
  async function splitInterruptedAfter(slot: number, lastStep: string): Promise<number> {
    const dry = await splitSlot(access, { slot, dryRun: true });
    const catalog = await connectCatalog(access);
    try {
      const plan = { kind: 'split' as const, slot, node: dry.node, replaced: [slot], replacements: dry.replacements, replacedModulus: dry.replaced[0]!.modulus };
      const cluster = await getCluster(catalog);
      const migrationId = await createSlotExchangeMigration(catalog, plan, cluster.epoch, 0);
      const node = await connectNode(await getNode(catalog, plan.node), noPasswords);
      try {
        const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
        const context = { migrationId, kind: plan.kind, tables, nodeName: plan.node, node, catalog, replacedModulus: plan.replacedModulus, highOwner: plan.node,
          exchange: { clusterModulus: cluster.modulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind } };
        const runner = await StepRunner.open(catalogStepJournal(catalog, migrationId), [slot], () => {});
        const upTo = SLOT_EXCHANGE_STEPS.findIndex((step) => step.name === lastStep);
        await runner.run(SLOT_EXCHANGE_STEPS.slice(0, upTo + 1), context, [slot]);
      } finally {
        await node.end();
      }
      return migrationId;
    } finally {
      await catalog.end();
    }
  }

  // A crash after each step: running the split again finishes it; `reshard rollback` before the switch undoes it in place.
  const RESUMED_AFTER = [['prepare', 0], ['copy', 1], ['freeze', 3], ['sync', 4], ['attach', 7], ['switch', 6]] as const;
  const ROLLED_BACK_AFTER = [['prepare', 8], ['copy', 10], ['freeze', 12], ['sync', 13], ['attach', 9]] as const;

  it('resumes a split interrupted after any step (split again), and undoes one interrupted before its switch (rollback)', async () => {
    const rowsBefore = (await verifyCluster(access)).rowsTotal;
    for (const [step, slot] of RESUMED_AFTER) {
      const interruptedId = await splitInterruptedAfter(slot, step);
      if (step === 'freeze' || step === 'sync' || step === 'attach') expect((await slotMapOf(access)).states[slot]).toBe('frozen');
      await expect(runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), 'resume'])).resolves.toMatchObject({ stderr: expect.stringMatching(new RegExp(`reshard split --slot ${slot}`)) });
      const resumed = await splitSlot(access, { slot });
      expect(resumed.resumed).toBe(true);
      expect(resumed.migrationId).toBe(interruptedId);
      const map = await slotMapOf(access);
      expect(slotModulus(map, slot)).toBe(2 * SLOTS);
      expect(map.owners[slot + SLOTS]).toBe(map.owners[slot]);
      const verified = await verifyCluster(access);
      expect({ step, problems: verified.problems }).toEqual({ step, problems: [] });
      expect(verified.rowsTotal).toBe(rowsBefore);
    }
    for (const [step, slot] of ROLLED_BACK_AFTER) {
      await splitInterruptedAfter(slot, step);
      const rolledBack = await rollbackMigration(access, { emit: () => {}, moveConcurrencyMax: 1 });
      expect(rolledBack.undoneSlots).toEqual([slot]);
      const map = await slotMapOf(access);
      expect(hasSlot(map, slot + SLOTS)).toBe(false);
      expect(slotModulus(map, slot)).toBe(SLOTS);
      expect(map.states[slot]).toBe('active');
      const verified = await verifyCluster(access);
      expect({ step, problems: verified.problems }).toEqual({ step, problems: [] });
      expect(verified.rowsTotal).toBe(rowsBefore);
    }
  });

  /** What a split leaves on the nodes between its steps: triggers recording keys or row sums, recorded keys, sums rows. */
  async function splitLeftovers(): Promise<string[]> {
    const found: string[] = [];
    for (const server of cluster.servers) {
      const db = await connectTo(server.connection);
      try {
        const triggers = await db.query<{ what: string }>("SELECT tgname || ' on ' || tgrelid::regclass AS what FROM pg_trigger WHERE tgname IN ('reshard_changed_keys', 'reshard_row_sums', 'reshard_row_sums_truncate')");
        found.push(...triggers.rows.map((row) => `${server.name}: trigger ${row.what}`));
        for (const table of ['reshard_node.changed_keys', 'reshard_node.leaf_row_sums']) {
          const present = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [table]);
          if (!present.rows[0]!.present) continue;
          const rows = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
          if (Number(rows.rows[0]!.n) > 0) found.push(`${server.name}: ${rows.rows[0]!.n} rows in ${table}`);
        }
      } finally {
        await db.end();
      }
    }
    return found;
  }

  it('leaves no recorded keys, row sums or their triggers after the splits resumed or undone above', async () => {
    expect(await splitLeftovers()).toEqual([]);
  });

  it('fails a split whose staged copy was changed behind its back before the freeze, and undoes it', async () => {
    const slot = 15;
    const rowsBefore = (await verifyCluster(access)).rowsTotal;
    await splitInterruptedAfter(slot, 'copy');
    const ownerName = (await slotMapOf(access)).owners[slot];
    const owner = cluster.servers.find((server) => server.name === ownerName)!;
    const node = await connectTo(owner.connection);
    try {
      // A row of the low child gone (its row sums see it; the parent leaf's recorded keys do not name it).
      const staged = `${leafName('reshard_check_items', slot, SLOTS)}_split`;
      const gone = await node.query(`DELETE FROM ${staged} WHERE id = (SELECT min(id) FROM ${staged})`);
      expect(gone.rowCount).toBe(1);
    } finally {
      await node.end();
    }
    await expect(splitSlot(access, { slot })).rejects.toThrow(/copy differs from the slot: public.reshard_check_items/);
    const map = await slotMapOf(access);
    expect(hasSlot(map, slot + SLOTS)).toBe(false);
    expect(slotModulus(map, slot)).toBe(SLOTS);
    expect(map.states[slot]).toBe('active');
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
    expect(verified.rowsTotal).toBe(rowsBefore);
    expect(await splitLeftovers()).toEqual([]);
  });

  it('split --to moves the new half to another node (the CLI, end to end)', async () => {
    const rowsBefore = (await verifyCluster(access)).rowsTotal;
    const owner = (await slotMapOf(access)).owners[11]!;
    const to = cluster.servers.map((server) => server.name).find((name) => name !== owner)!;
    const cli = await runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), 'split', '--slot', '11', '--to', to]);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`Moved slot 27 to ${to}: migration \\d+ completed`));
    const map = await slotMapOf(access);
    expect(map.owners[11]).toBe(owner);
    expect(map.owners[27]).toBe(to);
    expect(slotModulus(map, 27)).toBe(2 * SLOTS);
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
    expect(verified.rowsTotal).toBe(rowsBefore);
  });

  it('refuses work routed at a map from before a split (RSM01: route the key again) and lets the new map through', async () => {
    const map = await slotMapOf(access);
    const owner = cluster.servers.find((server) => server.name === map.owners[7])!;
    const changedAt = await withCatalog(access, async (catalog) => Number((await catalog.query<{ epoch: string }>('SELECT changed_epoch::text AS epoch FROM reshard.slot WHERE slot = 7')).rows[0]!.epoch));
    const node = await connectTo(owner.connection);
    try {
      for (const slot of [7, 7 + SLOTS]) {
        const stale = await node.query('SELECT reshard_node.route($1, $2)', [slot, changedAt - 1]).then(() => undefined, (error: unknown) => error as { code?: string; detail?: string });
        expect(stale?.code).toBe('RSM01');
        expect(JSON.parse(stale!.detail!)).toMatchObject({ slot, state: 'changed', epoch: changedAt });
        await node.query('SELECT reshard_node.route($1, $2)', [slot, map.epoch]);
      }
    } finally {
      await node.end();
    }
  });
});
