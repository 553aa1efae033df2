/**
 * `reshard split --slot N --to NODE` as one migration (issue 14, item 2):
 * eight clients write through a router (inserts, increments, deletes) while
 * a hot slot is split with its high child placed on another node. Every
 * acknowledged write is found exactly once, counters are exact, no client
 * sees an error; each row is copied once (the copy step's figures add up to
 * the slot's rows, not 1.5×), the high child's rows are on NODE and the low
 * child's on the slot's node, and `reshard rollback` of a split --to (after
 * its switch) moves the high child back and merges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rollbackMigration } from '../../src/admin/rollbackMigration.js';
import { setNode } from '../../src/admin/setNode.js';
import { splitSlot } from '../../src/admin/slotExchange.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readJournal } from '../../src/catalog/journal.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { CHECK_TABLES } from '../../src/checker/checkTables.js';
import { verifyWorkload } from '../../src/checker/verifyWorkload.js';
import { Workload } from '../../src/checker/workload.js';
import { ReshardError } from '../../src/core/errors.js';
import { assertSlotMapValid, hasSlot, slotModulus, slotOfKeyIn } from '../../src/core/slotMap.js';
import { leafName } from '../../src/node/leafName.js';
import { connectCatalog, withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { getCluster } from '../../src/catalog/cluster.js';
import { getNode } from '../../src/catalog/nodes.js';
import { createSlotExchangeMigration } from '../../src/catalog/slotExchanges.js';
import { listShardedTables } from '../../src/catalog/tables.js';
import { SLOT_EXCHANGE_STEPS } from '../../src/mover/slotExchangeSteps.js';
import { SPLIT_TO_STEPS } from '../../src/mover/splitToSteps.js';
import { catchUpStatements } from '../../src/node/exchangeChangedKeys.js';
import { catchUpAcross, remoteCatchUp } from '../../src/node/remoteSplitChild.js';
import { catalogStepJournal } from '../../src/mover/stepJournal.js';
import { StepRunner } from '../../src/mover/stepRunner.js';
import { connectNode } from '../../src/plumbing/connectNode.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/router.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import { expectClusterClean } from '../support/cluster.js';

const SLOTS = 16;
const HOT_SLOT = 5;

describe('split --to: one copy of each row, the high child straight onto another node, under 8 writing clients', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router | undefined;

  beforeAll(async () => {
    cluster = await startTestServers(3, 'st');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (const server of cluster.servers) await addNode(access, { name: server.name, connection: server.connection });
    for (const table of CHECK_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
  });
  afterAll(async () => {
    await router?.close();
    await cluster?.stop();
  });

  const serverOf = (name: string): TestServers['servers'][number] => cluster.servers.find((server) => server.name === name)!;

  /** Per table: the rows of the leaf of `slot` on `node` (0 when it has no such leaf), and whether the leaf is attached. */
  async function leafRows(node: string, slot: number): Promise<{ rows: number; attached: boolean; present: boolean }[]> {
    const db = await connectTo(serverOf(node).connection);
    try {
      const found = [];
      for (const table of CHECK_TABLES) {
        const leaf = leafName(table.name, slot, SLOTS);
        const state = await db.query<{ present: boolean; attached: boolean }>("SELECT to_regclass($1) IS NOT NULL AS present, coalesce((SELECT relispartition FROM pg_class WHERE oid = to_regclass($1)), false) AS attached", [leaf]);
        const present = state.rows[0]!.present;
        const rows = present ? Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${leaf}`)).rows[0]!.n) : 0;
        found.push({ rows, attached: state.rows[0]!.attached, present });
      }
      return found;
    } finally {
      await db.end();
    }
  }

  it('dry-run prints one migration\'s steps on both nodes; bad --to is one clear line', async () => {
    const map = await withCatalog(access, (catalog) => readSlotMap(catalog));
    const owner = map.owners[HOT_SLOT]!;
    const to = cluster.servers.map((server) => server.name).find((name) => name !== owner)!;
    const dry = await splitSlot(access, { slot: HOT_SLOT, to, dryRun: true });
    expect(dry.steps.map((step) => step.step)).toEqual(['prepare', 'copy', 'freeze', 'sync', 'attach', 'switch', 'cleanup']);
    expect(dry.steps.find((step) => step.step === 'copy')!.action).toMatch(new RegExp(`straight into .* on ${to}`));
    await expect(splitSlot(access, { slot: HOT_SLOT, to: owner })).rejects.toThrow(/is the node slot 5 is on already/);
    await expect(splitSlot(access, { slot: HOT_SLOT, to: 'nowhere' })).rejects.toThrow(ReshardError);
    const cli = await runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), 'split', '--slot', String(HOT_SLOT), '--to', 'nowhere']);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli.stderr).toMatch(/--to names no active node "nowhere"/);
    // A target without room for the high child (half the slot's bytes, within the 10 % headroom) is refused before anything changes.
    await setNode(access, { name: to, capacityBytes: 1 });
    await expect(splitSlot(access, { slot: HOT_SLOT, to })).rejects.toThrow(new RegExp(`split of slot 5 not started: slot 21 .* would bring ${to} to`));
    await setNode(access, { name: to, capacityBytes: 1e15 });
    expect((await withCatalog(access, (catalog) => readSlotMap(catalog))).epoch).toBe(map.epoch);
    expect(await withCatalog(access, async (catalog) => (await catalog.query('SELECT 1 FROM reshard.migration')).rowCount)).toBe(0);
  });

  it('splits a hot slot onto another node with every write kept, each row copied once, then rolls it back (move back + merge)', async () => {
    router = await Router.connect({ catalog: access.catalog, name: 'split --to test', poolSizePerNode: 8 });
    const workload = new Workload(router, { clients: 8, counters: 64, hotSlots: () => [HOT_SLOT] }, SLOTS);
    await workload.prepare();
    workload.start();
    let stopped = false;
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_500));

      const before = await withCatalog(access, (catalog) => readSlotMap(catalog));
      const owner = before.owners[HOT_SLOT]!;
      const to = cluster.servers.map((server) => server.name).find((name) => name !== owner)!;
      const migrationsBefore = await withCatalog(access, async (catalog) => Number((await catalog.query<{ n: string }>('SELECT count(*)::text AS n FROM reshard.migration')).rows[0]!.n));

      const split = await splitSlot(access, { slot: HOT_SLOT, to });
      const journal = await withCatalog(access, (catalog) => readJournal(catalog, split.migrationId!));
      const copyDone = journal.find((entry) => entry.step === 'copy' && entry.action === 'done')!.detail as { rows: number; lowRows: number; highRows: number; caughtUp: number };
      const syncDone = journal.find((entry) => entry.step === 'sync' && entry.action === 'done')!.detail as { rows: number; childRows: number[] };
      const begun = new Map<string, number>();
      const stepMs: string[] = [];
      for (const entry of journal) {
        if (entry.action === 'begin') begun.set(entry.step, entry.at.getTime());
        if (entry.action === 'done' && begun.has(entry.step)) stepMs.push(`${entry.step} ${entry.at.getTime() - begun.get(entry.step)!} ms`);
      }
      console.log(`split --to steps: ${stepMs.join(', ')}; attach ${JSON.stringify(journal.find((entry) => entry.step === 'attach' && entry.action === 'done')?.detail)}`);
      console.log(`split --to of slot ${HOT_SLOT} (${owner} → ${to}): slot ${syncDone.rows} rows at the freeze (${syncDone.childRows.join(' + ')}); copied once ${copyDone.rows} (${copyDone.lowRows} on ${owner} + ${copyDone.highRows} to ${to}), ${copyDone.caughtUp} recorded changes caught up; writes paused ${split.pauseMs} ms, ${split.caughtUpInFreeze} changes in the freeze`);

      // One migration, each row copied once: the bulk copy's figures are the slot's rows when it copied (a hot slot grows
      // between the copy and the freeze; the cold slot below is exact), far from the 1.5× of a split in place then a move of the high half.
      expect(await withCatalog(access, async (catalog) => Number((await catalog.query<{ n: string }>('SELECT count(*)::text AS n FROM reshard.migration')).rows[0]!.n))).toBe(migrationsBefore + 1);
      expect(split.rowsCopied).toEqual({ low: copyDone.lowRows, high: copyDone.highRows });
      expect(copyDone.rows).toBe(copyDone.lowRows + copyDone.highRows);
      expect(copyDone.rows).toBeGreaterThan(100);
      expect(copyDone.rows).toBeLessThanOrEqual(syncDone.rows * 1.2);
      expect(copyDone.highRows).toBeGreaterThan(0);
      expect(copyDone.lowRows).toBeGreaterThan(0);
      expect(split.pauseMs).toBeGreaterThan(0);
      expect(split.moved).toMatchObject({ slot: HOT_SLOT + SLOTS, to, migrationId: split.migrationId, state: 'completed' });

      const map = await withCatalog(access, (catalog) => readSlotMap(catalog));
      assertSlotMapValid(map);
      expect(map.owners[HOT_SLOT]).toBe(owner);
      expect(map.owners[HOT_SLOT + SLOTS]).toBe(to);
      expect(slotModulus(map, HOT_SLOT)).toBe(2 * SLOTS);
      expect(slotModulus(map, HOT_SLOT + SLOTS)).toBe(2 * SLOTS);
      // The high child's rows are on NODE (attached), the low child's on the source; neither node has the other's leaf.
      const lowOnSource = await leafRows(owner, HOT_SLOT);
      const highOnTarget = await leafRows(to, HOT_SLOT + SLOTS);
      expect(lowOnSource.every((leaf) => leaf.attached)).toBe(true);
      expect(highOnTarget.every((leaf) => leaf.attached)).toBe(true);
      expect((await leafRows(owner, HOT_SLOT + SLOTS)).some((leaf) => leaf.present)).toBe(false);
      expect((await leafRows(to, HOT_SLOT)).some((leaf) => leaf.present)).toBe(false);
      expect(highOnTarget[0]!.rows).toBeGreaterThan(0);
      // The source refuses the high child's slot with a redirect to its new node.
      const source = await connectTo(serverOf(owner).connection);
      try {
        const refused = await source.query('SELECT reshard_node.route($1, $2)', [HOT_SLOT + SLOTS, map.epoch]).then(() => undefined, (error: unknown) => error as { code?: string; detail?: string });
        expect(refused?.code).toBe('RSM02');
        expect(JSON.parse(refused!.detail!)).toMatchObject({ slot: HOT_SLOT + SLOTS, state: 'moved', owner: to });
      } finally {
        await source.end();
      }
      const verifiedAfterSplit = await verifyCluster(access);
      expect(verifiedAfterSplit.problems).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 800));

      // `reshard rollback` of a switched split --to: the high child moved back to the source, then merged.
      const rolledBack = await rollbackMigration(access, { emit: () => {}, moveConcurrencyMax: 1 });
      expect(rolledBack.movedBackSlots).toEqual([HOT_SLOT]);
      const merged = await withCatalog(access, (catalog) => readSlotMap(catalog));
      expect(hasSlot(merged, HOT_SLOT + SLOTS)).toBe(false);
      expect(slotModulus(merged, HOT_SLOT)).toBe(SLOTS);
      expect(merged.owners[HOT_SLOT]).toBe(owner);
      await new Promise((resolve) => setTimeout(resolve, 800));

      const log = await workload.stop();
      stopped = true;
      const report = await verifyWorkload(access, log);
      console.log(`writes: ${log.samples.length}, inserts ${report.insertsAcked}, increments ${report.incrementsAcked}, deletes ${report.deletesAcked}, client errors ${log.errors.length}`);
      expect(report.violations).toEqual([]);
      expect(log.errors.slice(0, 5)).toEqual([]);
      expect(report.insertsAcked).toBeGreaterThan(100);
      expect(report.incrementsAcked).toBeGreaterThan(100);
      expect(report.deletesAcked).toBeGreaterThan(0);
      await expectClusterClean(access);
    } finally {
      if (!stopped) await workload.stop();
    }
  }, 240_000);

  it('a cold slot: the rows copied are exactly the slot\'s rows, half of them over the network', async () => {
    const map = await withCatalog(access, (catalog) => readSlotMap(catalog));
    const slot = 9;
    const owner = map.owners[slot]!;
    const to = cluster.servers.map((server) => server.name).find((name) => name !== owner)!;
    const rowsBefore = (await leafRows(owner, slot)).reduce((sum, leaf) => sum + leaf.rows, 0);
    const cli = await runCli(['--json', '--catalog', catalogUrl(cluster.servers[0]!.connection), 'split', '--slot', String(slot), '--to', to]);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    const result = JSON.parse(cli.stdout.trim().split('\n').at(-1)!) as { rows: number; pause_ms: number; rows_copied: { low: number; high: number }; moved: { to: string; state: string } };
    console.log(`split --to of cold slot ${slot} (${owner} → ${to}): ${result.rows} rows; copied once ${result.rows_copied.low} + ${result.rows_copied.high}; writes paused ${result.pause_ms} ms`);
    expect(result.rows).toBe(rowsBefore);
    expect(result.rows_copied.low + result.rows_copied.high).toBe(rowsBefore);
    expect(result.moved).toMatchObject({ to, state: 'completed' });
    const low = (await leafRows(owner, slot)).reduce((sum, leaf) => sum + leaf.rows, 0);
    const high = (await leafRows(to, slot + SLOTS)).reduce((sum, leaf) => sum + leaf.rows, 0);
    expect({ low, high }).toEqual(result.rows_copied);
    // The source keeps a tombstone for the high child (moved to NODE), which doctor reads as consistent with the map.
    await expectClusterClean(access);
    const status = await runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), 'status']);
    expect(status.stdout).toMatch(/Migration \d+ \(split\): completed/);
  });

  it('a split --to interrupted under the older build (a split in place, the move of its high child to follow) resumes as it was recorded', async () => {
    const slot = 12;
    const owner = (await withCatalog(access, (catalog) => readSlotMap(catalog))).owners[slot]!;
    const to = cluster.servers.map((server) => server.name).find((name) => name !== owner)!;
    const rowsBefore = (await verifyCluster(access)).rowsTotal;
    // The older build recorded a split in place (a plan without `to`), interrupted here after its copy.
    const catalog = await connectCatalog(access);
    let interruptedId: number;
    try {
      const plan = { kind: 'split' as const, slot, node: owner, replaced: [slot], replacements: [{ slot, modulus: 2 * SLOTS }, { slot: slot + SLOTS, modulus: 2 * SLOTS }], replacedModulus: SLOTS };
      const cluster0 = await getCluster(catalog);
      interruptedId = await createSlotExchangeMigration(catalog, plan, cluster0.epoch, 0);
      const node = await connectNode(await getNode(catalog, owner), noPasswords);
      try {
        const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
        const context = { migrationId: interruptedId, kind: plan.kind, tables, nodeName: owner, node, catalog, replacedModulus: SLOTS, highOwner: owner,
          exchange: { clusterModulus: cluster0.modulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind } };
        const runner = await StepRunner.open(catalogStepJournal(catalog, interruptedId), [slot], () => {});
        await runner.run(SLOT_EXCHANGE_STEPS.slice(0, 2), context, [slot]);
      } finally {
        await node.end();
      }
    } finally {
      await catalog.end();
    }
    // Run again with --to, as the older build's split --to was: the split finishes in place, then its high child moves.
    const resumed = await splitSlot(access, { slot, to });
    expect(resumed.resumed).toBe(true);
    expect(resumed.migrationId).toBe(interruptedId);
    expect(resumed.moved).toMatchObject({ slot: slot + SLOTS, to, state: 'completed' });
    expect(resumed.moved!.migrationId).not.toBe(interruptedId);
    const map = await withCatalog(access, (db) => readSlotMap(db));
    expect(map.owners[slot]).toBe(owner);
    expect(map.owners[slot + SLOTS]).toBe(to);
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
    expect(verified.rowsTotal).toBe(rowsBefore);
  });

  it('a catch-up round that fails after the target committed (before the source forgot the keys) is taken again: the split --to resumes exact', async () => {
    const slot = 3;
    const map = await withCatalog(access, (db) => readSlotMap(db));
    const owner = map.owners[slot]!;
    const to = cluster.servers.map((server) => server.name).find((name) => name !== owner)!;
    const plan = { kind: 'split' as const, slot, node: owner, to, replaced: [slot], replacements: [{ slot, modulus: 2 * SLOTS }, { slot: slot + SLOTS, modulus: 2 * SLOTS }], replacedModulus: SLOTS };
    const catalog = await connectCatalog(access);
    const source = await connectNode(await getNode(catalog, owner), noPasswords);
    const target = await connectNode(await getNode(catalog, to), noPasswords);
    let interruptedId: number;
    const ids: number[] = [];
    try {
      const cluster0 = await getCluster(catalog);
      interruptedId = await createSlotExchangeMigration(catalog, plan, cluster0.epoch, 0);
      const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
      const local = { clusterModulus: cluster0.modulus, replaced: [slot], replacements: [plan.replacements[0]!], kind: 'split' as const };
      const context = { migrationId: interruptedId, kind: 'split' as const, tables, nodeName: owner, node: source, catalog, replacedModulus: SLOTS, highOwner: to,
        exchange: local, targetName: to, target, child: plan.replacements[1]! };
      const runner = await StepRunner.open(catalogStepJournal(catalog, interruptedId), [slot], () => {});
      await runner.run(SPLIT_TO_STEPS.slice(0, 2), context, [slot]);
      // Writes after the copy, to both halves: new rows, changed rows, deleted rows (recorded by the trigger).
      for (let id = 9_000_000; ids.length < 40; id++) if (slotOfKeyIn(map, ['bigint'], [id]) === slot) ids.push(id);
      for (const id of ids) await source.query('INSERT INTO reshard_check_items (id, worker, payload) VALUES ($1, 99, $2)', [id, `late ${id}`]);
      await source.query("UPDATE reshard_check_items SET payload = payload || ' changed' WHERE id = ANY($1::bigint[]) AND id % 3 = 0", [ids]);
      await source.query('DELETE FROM reshard_check_items WHERE id = ANY($1::bigint[]) AND id % 5 = 0', [ids]);
      // One round whose source part fails after the target committed the keys' rows: the keys stay recorded.
      const statements = await catchUpStatements(source, tables, local);
      const remote = await remoteCatchUp(source, target, tables, local, context.child);
      await expect(catchUpAcross(source, target, [...statements.slice(0, -1), 'SELECT 1 / 0'], remote)).rejects.toThrow(/division by zero/);
      const recorded = await source.query<{ n: string }>('SELECT count(*)::text AS n FROM reshard_node.changed_keys');
      expect(Number(recorded.rows[0]!.n)).toBeGreaterThan(0);
      const highLeaf = leafName('reshard_check_items', slot + SLOTS, SLOTS);
      const landed = await target.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${highLeaf} WHERE worker = 99`);
      expect(Number(landed.rows[0]!.n)).toBeGreaterThan(0);
    } finally {
      await Promise.all([source.end(), target.end()]);
      await catalog.end();
    }
    const rowsBefore = (await verifyCluster(access)).rowsTotal;
    // Run again: the rounds take the keys again, the freeze proves both children against the leaf.
    const resumed = await splitSlot(access, { slot });
    expect(resumed.resumed).toBe(true);
    expect(resumed.migrationId).toBe(interruptedId);
    expect(resumed.moved).toMatchObject({ slot: slot + SLOTS, to, state: 'completed' });
    const after = await withCatalog(access, (db) => readSlotMap(db));
    expect(after.owners[slot + SLOTS]).toBe(to);
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
    expect(verified.rowsTotal).toBe(rowsBefore);
    const onTarget = await connectTo(serverOf(to).connection);
    try {
      const late = await onTarget.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${leafName('reshard_check_items', slot + SLOTS, SLOTS)} WHERE worker = 99`);
      const onSource = await connectTo(serverOf(owner).connection);
      try {
        const lateLow = await onSource.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${leafName('reshard_check_items', slot, SLOTS)} WHERE worker = 99`);
        // 40 inserted, those with id % 5 = 0 deleted: every other one is in exactly one child.
        expect(Number(late.rows[0]!.n) + Number(lateLow.rows[0]!.n)).toBe(ids.filter((id) => id % 5 !== 0).length);
        expect(Number(late.rows[0]!.n)).toBeGreaterThan(0);
        expect(Number(lateLow.rows[0]!.n)).toBeGreaterThan(0);
      } finally {
        await onSource.end();
      }
    } finally {
      await onTarget.end();
    }
  });
});
