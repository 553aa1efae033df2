/**
 * `reshard split --all` (issue 14): 64 → 128 slots as one migration while
 * eight clients write through a router (the consistency check's workload).
 * The run is killed mid-way (a crash), resumed by `reshard resume`, paused
 * and resumed, cancelled (the slots split so far stay split), finished by
 * `split --all` again (it splits the slots not split yet); then a rebalance
 * adds a node. Every acknowledged write is present exactly once, counters
 * are exact, nothing is left over on any node.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { cancelMigration, pauseMigration, resumePausedMigration } from '../../src/admin/controlMigration.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { readMigrationStatus } from '../../src/admin/migrationStatus.js';
import { rebalance, resumeMigration } from '../../src/admin/rebalance.js';
import { splitAllSlots } from '../../src/admin/splitAllSlots.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { startDashboard } from '../../src/dashboard/server.js';
import { CHECK_TABLES } from '../../src/checker/checkTables.js';
import { verifyWorkload } from '../../src/checker/verifyWorkload.js';
import { Workload } from '../../src/checker/workload.js';
import { assertSlotMapValid, slotIds, slotModulus } from '../../src/core/slotMap.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { Router } from '../../src/router/router.js';
import { launchBrowser } from '../support/browser.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 64;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('split --all 64 → 128 under 8 writing clients, then a rebalance that adds a node', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router | undefined;

  beforeAll(async () => {
    cluster = await startTestServers(4, 'sa');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
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

  it('survives a crash, a pause, a cancel and a second run, and loses no acknowledged write', async () => {
    const catalog = catalogUrl(cluster.servers[0]!.connection);
    const dry = await runCli(['--json', '--catalog', catalog, 'split', '--all', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout.trim().split('\n').pop()!)).toMatchObject({ kind: 'split-all', dry_run: true, splits: SLOTS, slots_after: 2 * SLOTS, moduli_after: [2 * SLOTS] });
    expect((await runCli(['--catalog', catalog, 'split', '--all', '--slot', '3'])).stderr).toMatch(/--all splits every slot, so it takes neither --slot nor --to/);

    router = await Router.connect({ catalog: access.catalog, name: 'split --all test', poolSizePerNode: 8 });
    const workload = new Workload(router, { clients: 8, counters: 64 }, SLOTS);
    await workload.prepare();
    workload.start();
    await sleep(800);

    // 1. The CLI splits with JSON progress lines; it is killed (a crash) after its third split.
    const child = spawn(process.execPath, [RESHARD_BIN, '--json', '--catalog', catalog, 'split', '--all'], {
      env: { ...process.env, RESHARD_CATALOG: '', PGHOST: '', PGPORT: '', PGDATABASE: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let splitsSeen = 0;
    let stepsSeen = 0;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const event = JSON.parse(line) as { event?: string };
      if (event.event === 'step') stepsSeen += 1;
      if (event.event === 'move_done' && ++splitsSeen === 3) child.kill('SIGKILL');
    });
    const exit = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    expect(exit).toBe('SIGKILL');
    expect(stepsSeen).toBeGreaterThanOrEqual(3 * 7);
    let status = await readMigrationStatus(access);
    const migrationId = status.migration!.id;
    expect(status.migration!.state).toBe('running');
    expect(status.held).toBe(false);
    expect(status.moves).toHaveLength(SLOTS);
    expect(status.moves.filter((move) => move.state === 'done').length).toBeGreaterThanOrEqual(3);

    // 2. `reshard resume` continues it (the split in flight from its journal); paused after two more splits, then resumed, then cancelled.
    const events: MigrationEvent[] = [];
    let doneInRun = 0;
    let paused: () => void = () => {};
    const pausedNow = new Promise<void>((resolve) => { paused = resolve; });
    const resumed = resumeMigration(access, {
      moveConcurrencyMax: 1,
      emit: (event) => {
        events.push(event);
        if (event.type === 'move_done' && ++doneInRun === 2) void pauseMigration(access);
        if (event.type === 'control' && event.control === 'paused') paused();
      },
    });
    await pausedNow;
    status = await readMigrationStatus(access);
    expect(status.migration!.id).toBe(migrationId);
    expect(status.held).toBe(true);
    expect(status.control).toBe('pause');
    const doneWhilePaused = status.moves.filter((move) => move.state === 'done').length;
    const cliStatus = await runCli(['--catalog', catalog, 'status']);
    expect(cliStatus.stdout).toMatch(new RegExp(`Migration ${migrationId} \\(split\\): running \\(paused since`));
    // The dashboard's migration view shows the split-all and its grid the split slots.
    const dashboard = await startDashboard({ access, port: 0, controlToken: 'split-all-test' });
    try {
      await sleep(1500);
      const state = await (await fetch(new URL('api/state', dashboard.url))).json() as {
        migration: { id: number; moves: { source: string; target: string }[] }; slot_map: { moduli: (number | null)[] };
      };
      expect(state.migration.id).toBe(migrationId);
      expect(state.migration.moves.filter((move) => move.source === move.target)).toHaveLength(SLOTS);
      expect(state.slot_map.moduli.filter((modulus) => modulus === 2 * SLOTS).length).toBe(2 * doneWhilePaused);
      // In a real browser: a split slot is visibly two — both halves marked, side by side; the moves read "split on".
      const { browser } = await launchBrowser();
      try {
        const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
        await page.goto(dashboard.url);
        await page.locator('#live.on').waitFor({ timeout: 15_000 });
        await expect.poll(() => page.locator('#grid .slot').count()).toBe(SLOTS + doneWhilePaused);
        expect(await page.locator('#grid .slot.split').count()).toBe(2 * doneWhilePaused);
        const order = await page.locator('#grid .slot').evaluateAll((cells) => cells.map((cell) => Number(cell.getAttribute('data-slot'))));
        const firstSplit = order.find((slot) => slot >= SLOTS)! - SLOTS;
        expect(order[order.indexOf(firstSplit) + 1]).toBe(firstSplit + SLOTS);
        expect(await page.locator('#moves tr[data-slot]', { hasText: 'split on' }).count()).toBe(SLOTS);
        expect(await page.locator('#slots-caption').textContent()).toContain(`(${2 * doneWhilePaused} split)`);
      } finally {
        await browser.close();
      }
    } finally {
      await dashboard.close();
    }
    expect((await readMigrationStatus(access)).moves.filter((move) => move.state === 'done').length).toBe(doneWhilePaused);
    expect((await resumePausedMigration(access))?.changed).toBe(true);
    while (doneInRun < 6) await sleep(50);
    await cancelMigration(access);
    const cancelled = await resumed;
    expect(cancelled.migrationId).toBe(migrationId);
    expect(cancelled.state).toBe('cancelled');
    expect(events.some((event) => event.type === 'control' && event.control === 'resumed')).toBe(true);
    let map = await withCatalog(access, (db) => readSlotMap(db));
    assertSlotMapValid(map);
    const splitSoFar = slotIds(map).filter((slot) => slot < SLOTS && slotModulus(map, slot) === 2 * SLOTS).length;
    expect(splitSoFar).toBe(cancelled.slotsMoved);
    expect(splitSoFar).toBeGreaterThanOrEqual(3 + 6);
    expect(splitSoFar).toBeLessThan(SLOTS);
    console.log(`cancelled after ${splitSoFar} of ${SLOTS} splits; pauses of this run ${JSON.stringify(cancelled.pausesMs)}`);

    // 3. split --all again, killed after two splits; `reshard rollback` stops it (its split in flight undone in
    //    place or finished) and merges back what it split, as one merge-all migration: the map is as the cancel left it.
    const again = spawn(process.execPath, [RESHARD_BIN, '--json', '--catalog', catalog, 'split', '--all'], {
      env: { ...process.env, RESHARD_CATALOG: '', PGHOST: '', PGPORT: '', PGDATABASE: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let againSplits = 0;
    createInterface({ input: again.stdout! }).on('line', (line) => {
      const event = JSON.parse(line) as { event?: string };
      if (event.event === 'move_done' && ++againSplits === 2) again.kill('SIGKILL');
    });
    await new Promise((resolve) => again.on('exit', resolve));
    const rollback = await runCli(['--json', '--catalog', catalog, 'rollback']);
    expect(rollback.stderr).toBe('');
    const rolledBack = JSON.parse(rollback.stdout.trim().split('\n').pop()!) as { moved_back_slots: number[]; undone_slots: number[]; move_back: { state: string } };
    console.log(`rollback of an interrupted split --all: undone in place ${JSON.stringify(rolledBack.undone_slots)}, merged back ${JSON.stringify(rolledBack.moved_back_slots)}`);
    expect(rolledBack.moved_back_slots.length).toBeGreaterThanOrEqual(2);
    expect(rolledBack.move_back.state).toBe('completed');
    map = await withCatalog(access, (db) => readSlotMap(db));
    assertSlotMapValid(map);
    expect(slotIds(map)).toHaveLength(SLOTS + splitSoFar);
    expect((await verifyCluster(access)).problems).toEqual([]);

    // 4. split --all again splits the slots not split yet: 128 slots of modulus 128.
    const finished = await splitAllSlots(access);
    expect(finished.state).toBe('completed');
    expect(finished.splits).toBe(SLOTS - splitSoFar);
    expect(finished.slotsAfter).toBe(2 * SLOTS);
    expect(finished.moduliAfter).toEqual([2 * SLOTS]);
    const pauses = [...finished.pausesMs].sort((a, b) => a - b);
    console.log(`split --all: ${finished.splits} splits, ${finished.rows} rows in ${finished.seconds.toFixed(1)} s; write pause per slot p50 ${pauses[Math.floor(pauses.length / 2)]} ms, max ${pauses[pauses.length - 1]} ms`);
    map = await withCatalog(access, (db) => readSlotMap(db));
    assertSlotMapValid(map);
    expect(slotIds(map)).toHaveLength(2 * SLOTS);
    for (const slot of slotIds(map)) expect(slotModulus(map, slot)).toBe(2 * SLOTS);
    await sleep(500);

    // 5. A rebalance that adds a node, on the split map.
    await addNode(access, { name: cluster.servers[3]!.name, connection: cluster.servers[3]!.connection });
    const grow = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(grow.summary?.state).toBe('completed');
    map = await withCatalog(access, (db) => readSlotMap(db));
    const perNode = new Map<string, number>();
    for (const slot of slotIds(map)) perNode.set(map.owners[slot]!, (perNode.get(map.owners[slot]!) ?? 0) + 1);
    console.log(`slots per node after the rebalance: ${JSON.stringify(Object.fromEntries(perNode))}`);
    for (const count of perNode.values()) expect(Math.abs(count - (2 * SLOTS) / 4)).toBeLessThanOrEqual(1);
    await sleep(500);

    const log = await workload.stop();
    const report = await verifyWorkload(access, log);
    console.log(`writes: inserts ${report.insertsAcked}, increments ${report.incrementsAcked}, deletes ${report.deletesAcked}, unknown ${report.unknownOutcomes}, client errors ${log.errors.length}`);
    expect(report.violations).toEqual([]);
    expect(log.errors.slice(0, 5)).toEqual([]);
    expect(report.insertsAcked).toBeGreaterThan(100);
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
  }, 600_000);
});
