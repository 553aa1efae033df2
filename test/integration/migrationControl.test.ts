import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { pauseMigration } from '../../src/admin/controlMigration.js';
import { prepareRebalance } from '../../src/admin/rebalance.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { getMigration, listMoves } from '../../src/catalog/migrationRuns.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { runMigration } from '../../src/coordinator/runMigration.js';
import { sleep, waitFor } from '../../src/plumbing/waitFor.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { leftoverReplicationObjects } from '../support/leftovers.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 32;
const USERS = 4_000;
const CONTROL_LIMITS = { pollMs: 50, pauseMaxMs: 120_000 };

/** Runs a prepared migration in the background, collecting its events. */
function startMigration(access: ClusterAccess, migrationId: number, moveConcurrencyMax: number, copyBytesPerSecMax?: number) {
  const events: MigrationEvent[] = [];
  const summary = runMigration(migrationId, {
    access, emit: (event) => events.push(event), moveConcurrencyMax, controlLimits: CONTROL_LIMITS,
    ...(copyBytesPerSecMax ? { throttle: { copyBytesPerSecMax } } : {}),
  });
  return { events, summary };
}

function waitForEvent(events: readonly MigrationEvent[], what: string, match: (event: MigrationEvent) => boolean): Promise<MigrationEvent> {
  return waitFor(what, async () => events.find(match), { timeoutMs: 60_000, pollMs: 20, fix: 'see the migration events' });
}

describe('pause, resume and cancel of a running migration on real PostgreSQL', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: pg.Client;
  let url: string;

  beforeAll(async () => {
    cluster = await startTestServers(4, 'ctl');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    catalog = await connectTo(cluster.servers[0]!.connection);
    url = catalogUrl(cluster.servers[0]!.connection);
  });
  afterAll(async () => {
    await catalog?.end();
    await cluster?.stop();
  });

  it('refuses pause and cancel when no migration runs, with one clear line', async () => {
    for (const verb of ['pause', 'cancel']) {
      const result = await runCli(['--catalog', url, verb]);
      expect(result.code).toBe(4);
      expect(result.stderr.trim()).toMatch(new RegExp(`^reshard: error: no migration is running, so there is nothing to ${verb}\\. Fix: .+`));
    }
  });

  it('pause holds an offline migration (no step starts while paused); resume runs it to completion', async () => {
    const prepared = await prepareRebalance(access, { mode: 'offline', dryRun: false });
    const migrationId = prepared.migrationId!;
    // Paced so that each move lasts about a second: the pause (a CLI process starting) must land while moves remain.
    const run = startMigration(access, migrationId, 1, 32 * 1024);
    await waitForEvent(run.events, 'the first move', (event) => event.type === 'move_done');

    const paused = await runCli(['--catalog', url, '--json', 'pause']);
    expect(paused.code).toBe(0);
    expect(JSON.parse(paused.stdout.trim().split('\n').pop()!)).toMatchObject({ migration_id: migrationId, control: 'pause', changed: true, held: true });
    await waitForEvent(run.events, 'the pause', (event) => event.type === 'control' && event.control === 'paused');

    const pauseEntry = await catalog.query<{ id: string }>("SELECT max(id)::text AS id FROM reshard.journal WHERE migration_id = $1 AND step = 'pause' AND action = 'begin'", [migrationId]);
    const doneWhenPaused = (await withCatalog(access, (db) => listMoves(db, migrationId))).filter((move) => move.state === 'done').length;
    await sleep(1_500);
    const begunSince = await catalog.query<{ count: string }>(
      "SELECT count(*)::text FROM reshard.journal WHERE migration_id = $1 AND id > $2 AND action = 'begin' AND slot IS NOT NULL", [migrationId, pauseEntry.rows[0]!.id]);
    expect(Number(begunSince.rows[0]!.count)).toBe(0);
    const movesWhilePaused = await withCatalog(access, (db) => listMoves(db, migrationId));
    expect(movesWhilePaused.filter((move) => move.state === 'done')).toHaveLength(doneWhenPaused);
    expect(movesWhilePaused.some((move) => move.state === 'running')).toBe(false);
    expect(doneWhenPaused).toBeLessThan(movesWhilePaused.length);
    expect((await withCatalog(access, (db) => getMigration(db, migrationId))).state).toBe('running');

    const resumed = await runCli(['--catalog', url, '--json', 'resume']);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain('"control":"run"');
    const summary = await run.summary;
    expect(summary.state).toBe('completed');
    expect(summary.slotsMoved).toBe(SLOTS / 4);
    expect(run.events.some((event) => event.type === 'control' && event.control === 'resumed')).toBe(true);
    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    expect(report.rowsTotal).toBe(USERS * 2);
  });

  it('cancel stops an online migration and rolls back every move that had not switched, leaving the invariants intact', async () => {
    await removeNode(access, 'n4');
    const ownersBefore = (await withCatalog(access, readSlotMap)).owners;
    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    const migrationId = prepared.migrationId!;
    const run = startMigration(access, migrationId, 4);
    await waitForEvent(run.events, 'the first stream', (event) => event.type === 'step' && event.step === 'stream' && event.action === 'begin');
    // Held first, so that the cancel (a CLI process, seconds on a busy machine) lands before any cutover.
    await pauseMigration(access);
    await waitForEvent(run.events, 'the pause', (event) => event.type === 'control' && event.control === 'paused');

    const cancelled = await runCli(['--catalog', url, '--json', 'cancel']);
    expect(cancelled.code).toBe(0);
    expect(JSON.parse(cancelled.stdout.trim().split('\n').pop()!)).toMatchObject({ migration_id: migrationId, control: 'cancel', held: true });

    const summary = await run.summary;
    expect(summary.state).toBe('cancelled');
    const migration = await withCatalog(access, (db) => getMigration(db, migrationId));
    expect(migration.state).toBe('cancelled');
    const moves = await withCatalog(access, (db) => listMoves(db, migrationId));
    // Nothing is left half-done: every move either switched or was rolled back (or never began).
    expect(moves.filter((move) => !['done', 'rolled_back', 'pending'].includes(move.state))).toEqual([]);
    expect(moves.some((move) => move.state === 'rolled_back')).toBe(true);
    expect(moves.filter((move) => move.state === 'done')).toEqual([]);
    const owners = (await withCatalog(access, readSlotMap)).owners;
    for (const move of moves) expect(owners[move.slot]).toBe(move.state === 'done' ? move.target : ownersBefore[move.slot]);

    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    expect(report.rowsTotal).toBe(USERS * 2);
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
    const journal = await catalog.query<{ step: string; action: string }>("SELECT step, action FROM reshard.journal WHERE migration_id = $1 AND slot IS NULL ORDER BY id", [migrationId]);
    expect(journal.rows).toEqual([{ step: 'pause', action: 'begin' }, { step: 'pause', action: 'done' }, { step: 'cancel', action: 'begin' }, { step: 'cancel', action: 'done' }]);
    // A cancelled migration does not block the next one.
    const next = await prepareRebalance(access, { mode: 'online', dryRun: true });
    expect(next.plan.slotsMoved).toBeGreaterThan(0);
  });
});
