import { execFile } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { prepareRebalance, rebalance, resumeMigration } from '../../src/admin/rebalance.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readFreezeRoundTrips } from '../../src/catalog/freezePhases.js';
import { readJournal } from '../../src/catalog/journal.js';
import { getMigration, listMigrations, listMoves, runningMigration } from '../../src/catalog/migrationRuns.js';
import { readSlotMap, type SlotMapWithStates } from '../../src/catalog/slotMap.js';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { ReshardError } from '../../src/core/errors.js';
import { slotOf } from '../../src/core/hash.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { runMigration } from '../../src/coordinator/runMigration.js';
import { DEMO_TABLES, loadDemoRows } from '../../src/demo/demoData.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../../src/local/localServer.js';
import { serverOsUser } from '../../src/local/osUser.js';
import { ONLINE_LIMITS_DEFAULT, type OnlineLimits } from '../../src/mover/onlineBatch.js';
import { leafName } from '../../src/node/leafName.js';
import { reshardReplicationObjects } from '../../src/node/replication.js';
import { accessFor, createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const execFileAsync = promisify(execFile);

const SLOTS = 32;
const USERS = 2_000;
/** users + one order per user. */
const ROWS = USERS * 2;
/** 3 → 4 nodes moves a quarter of the slots. */
const MOVED = SLOTS / 4;

/** Everything a test started; stopped after each test (and, as a safety net, after all). */
const stops: (() => Promise<void>)[] = [];
async function stopEverything(): Promise<void> {
  while (stops.length > 0) await stops.pop()!().catch(() => {});
}

async function servers(count: number, prefix: string): Promise<TestServers> {
  const started = await startTestServers(count, prefix);
  stops.push(() => started.stop());
  return started;
}

/** reshard's publications, subscriptions and replication slots on every server, as `server:kind:name`. */
async function leftoverReplicationObjects(all: readonly LocalServer[]): Promise<string[]> {
  const leftovers: string[] = [];
  for (const server of all) {
    const client = await connectTo(server.connection);
    try {
      const objects = await reshardReplicationObjects(client);
      leftovers.push(
        ...objects.publications.map((name) => `${server.name}:publication:${name}`),
        ...objects.subscriptions.map((name) => `${server.name}:subscription:${name}`),
        ...objects.slots.map((name) => `${server.name}:replication slot:${name}`),
      );
    } finally {
      await client.end();
    }
  }
  return leftovers;
}

/** The row sums' triggers and rows left on any server (a move must end them, switched or rolled back). */
async function rowSumsLeftovers(all: readonly LocalServer[]): Promise<string[]> {
  const leftovers: string[] = [];
  for (const server of all) {
    const client = await connectTo(server.connection);
    try {
      const result = await client.query<{ what: string }>(
        `SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text AS what FROM pg_trigger WHERE tgname LIKE 'reshard_row_sums%'
         UNION ALL SELECT count(*) || ' sums rows' FROM reshard_node.leaf_row_sums HAVING count(*) > 0`);
      leftovers.push(...result.rows.map((row) => `${server.name}: ${row.what}`));
    } finally {
      await client.end();
    }
  }
  return leftovers;
}

function onlineLimits(overrides: Partial<OnlineLimits>): OnlineLimits {
  return { ...ONLINE_LIMITS_DEFAULT, ...overrides };
}

/** 3 nodes with the demo tables and rows, then an empty 4th node n4 waiting for a rebalance. */
async function grownDemoCluster(prefix: string): Promise<{ cluster: TestServers; access: ClusterAccess; before: SlotMapWithStates }> {
  const cluster = await servers(4, prefix);
  const access = await createDemoCluster(cluster.servers, 3, SLOTS);
  expect(await loadDemoRows(access, USERS)).toBe(ROWS);
  await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
  const before = await withCatalog(access, readSlotMap);
  expect(before.owners).not.toContain('n4');
  return { cluster, access, before };
}

/**
 * The failed migration left the cluster exactly as before: every slot active on
 * its old owner, all rows, no staging table or fence (verifyCluster), no
 * replication object anywhere, every move rolled back (or never started).
 * Soft assertions: every leftover is reported, and resume is still tried.
 */
async function expectRolledBackCleanly(access: ClusterAccess, all: readonly LocalServer[], before: SlotMapWithStates, migrationId: number): Promise<void> {
  const slotMap = await withCatalog(access, readSlotMap);
  expect.soft(slotMap.owners).toEqual(before.owners);
  expect.soft(slotMap.states.every((state) => state === 'active')).toBe(true);

  const report = await verifyCluster(access);
  expect.soft(report.problems).toEqual([]);
  expect.soft(report.rowsTotal).toBe(ROWS);
  expect.soft(await leftoverReplicationObjects(all)).toEqual([]);

  const { migration, moves, running } = await withCatalog(access, async (catalog) => ({
    migration: await getMigration(catalog, migrationId),
    moves: await listMoves(catalog, migrationId),
    running: await runningMigration(catalog),
  }));
  expect.soft(migration.state).toBe('failed');
  expect.soft(running).toBeUndefined();
  expect.soft(moves).toHaveLength(MOVED);
  expect.soft(moves.filter((move) => move.state === 'rolled_back').length).toBeGreaterThan(0);
  // Never 'failed' (half-done, blocks the next rebalance), 'running' or 'done'.
  expect.soft(moves.filter((move) => move.state !== 'rolled_back' && move.state !== 'pending').map((move) => `${move.slot}:${move.state}`)).toEqual([]);
}

/** `reshard resume` with default limits finishes the failed migration: n4 owns a quarter, nothing lost or left. */
async function expectResumeCompletes(access: ClusterAccess, all: readonly LocalServer[], migrationId: number): Promise<void> {
  const summary = await resumeMigration(access, { emit: () => {}, moveConcurrencyMax: 4 });
  expect(summary.migrationId).toBe(migrationId);
  expect(summary.error).toBeUndefined();
  expect(summary.state).toBe('completed');
  expect(summary.slotsMoved).toBe(MOVED);

  const slotMap = await withCatalog(access, readSlotMap);
  expect(slotMap.owners.filter((owner) => owner === 'n4')).toHaveLength(MOVED);
  expect(slotMap.states.every((state) => state === 'active')).toBe(true);
  const report = await verifyCluster(access);
  expect(report.problems).toEqual([]);
  expect(report.rowsTotal).toBe(ROWS);
  expect(await leftoverReplicationObjects(all)).toEqual([]);
  const moves = await withCatalog(access, (catalog) => listMoves(catalog, migrationId));
  expect(moves.every((move) => move.state === 'done')).toBe(true);
}

describe('online rebalance edge cases on real PostgreSQL', () => {
  afterEach(stopEverything);
  afterAll(stopEverything);

  it('refuses online mode on a wal_level=replica node before recording anything; offline mode then works', async () => {
    const cluster = await servers(3, 'wal');
    const replicaBase = mkdtempSync(join(tmpdir(), 'reshard-test-replica-'));
    const replica = await startLocalServer({ name: 'replica4', baseDir: replicaBase, settings: { wal_level: 'replica' } });
    stops.push(async () => {
      await replica.stop('fast');
      removeServerDirectory(replicaBase);
    });
    const all = [...cluster.servers, replica];

    const access = await createDemoCluster(cluster.servers, 3, SLOTS);
    expect(await loadDemoRows(access, USERS)).toBe(ROWS);
    // Adding a node only warns about online-mode settings.
    const added = await addNode(access, { name: 'n4', connection: replica.connection });
    expect(added.warnings.join('\n')).toContain('wal_level');
    const before = await withCatalog(access, readSlotMap);

    const failure = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ReshardError);
    const error = failure as ReshardError;
    expect(error.code).toBe('precondition');
    expect(error.message).toContain('"n4"');
    expect(error.message).toContain('wal_level=replica');
    expect(error.fix).toContain('--mode offline');

    // Nothing was recorded or changed.
    const { migrations, running, slotMap } = await withCatalog(access, async (catalog) => ({
      migrations: await listMigrations(catalog),
      running: await runningMigration(catalog),
      slotMap: await readSlotMap(catalog),
    }));
    expect(migrations).toEqual([]);
    expect(running).toBeUndefined();
    expect(slotMap.epoch).toBe(before.epoch);
    expect(slotMap.owners).toEqual(before.owners);
    const untouched = await verifyCluster(access);
    expect(untouched.problems).toEqual([]);
    expect(untouched.rowsTotal).toBe(ROWS);
    expect(await leftoverReplicationObjects(all)).toEqual([]);

    const offline = await rebalance(access, { mode: 'offline', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(offline.summary?.error).toBeUndefined();
    expect(offline.summary?.state).toBe('completed');
    expect(offline.summary?.slotsMoved).toBe(MOVED);
    const after = await verifyCluster(access);
    expect(after.problems).toEqual([]);
    expect(after.rowsTotal).toBe(ROWS);
    expect((await withCatalog(access, readSlotMap)).owners.filter((owner) => owner === 'n4')).toHaveLength(MOVED);
    expect(await leftoverReplicationObjects(all)).toEqual([]);
  });

  it('gives up a cutover whose freeze always outlasts its budget, rolls back cleanly, and resume then finishes', async () => {
    const { cluster, access, before } = await grownDemoCluster('frz');
    const events: MigrationEvent[] = [];
    const attemptsMax = 2;
    const result = await rebalance(access, {
      mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: (event) => events.push(event),
      // A 1 ms budget for fence + final sync can never be met.
      onlineLimits: onlineLimits({ freezeBudgetMs: 1, freezeAttemptsMax: attemptsMax }),
    });
    const summary = result.summary!;
    expect(summary.state).toBe('failed');
    expect(summary.slotsMoved).toBe(0);
    expect(summary.pausesMs).toEqual([]);
    // Today: "the freeze of slots N, M waited 4 ms, over its 1 ms budget" (a cutover group); any wording naming the slots and the 1 ms budget will do.
    expect(summary.error).toMatch(/slots? \d+/);
    expect(summary.error).toMatch(/\b1 ms\b/);
    expect(events.some((event) => event.type === 'move_failed' && event.rolledBack)).toBe(true);
    expect(events.some((event) => event.type === 'move_done')).toBe(false);

    // Each slot that tried its cutover tried exactly freezeAttemptsMax times: every attempt but the last
    // was abandoned and retried, and the last was undone by the batch's rollback.
    const journal = await withCatalog(access, (catalog) => readJournal(catalog, summary.migrationId));
    const triedSlots = [...new Set(journal.filter((entry) => entry.step === 'freeze' && entry.action === 'begin').map((entry) => entry.slot))];
    expect(triedSlots.length).toBeGreaterThan(0);
    for (const slot of triedSlots) {
      const freeze = journal.filter((entry) => entry.slot === slot && entry.step === 'freeze');
      expect(freeze.filter((entry) => entry.action === 'begin')).toHaveLength(attemptsMax);
      expect(freeze.filter((entry) => entry.action === 'undone')).toHaveLength(attemptsMax);
    }

    await expectRolledBackCleanly(access, cluster.servers, before, summary.migrationId);
    await expectResumeCompletes(access, cluster.servers, summary.migrationId);
  });

  it('cuts over a slot whose verification scan alone outlasts the freeze budget: the budget bounds waits, not the slot\'s size', async () => {
    const cluster = await servers(3, 'vfy');
    const access = await createDemoCluster(cluster.servers, 3, SLOTS);
    expect(await loadDemoRows(access, USERS)).toBe(ROWS);
    // 20 json documents of 6.4 MB (compressed to ~80 kB each on disk) in one slot of n3: json has no extended hash function, so
    // the checksum hashes the rows' text form, which takes seconds for these (by record, hashing is much faster: ~170 ms for 20 such texts).
    await createShardedTable(access, { name: 'heavy', shardKey: ['id'], definition: 'id bigint NOT NULL, doc json NOT NULL, PRIMARY KEY (id)' });
    const owners = (await withCatalog(access, readSlotMap)).owners;
    const heavySlot = owners.indexOf('n3');
    const bigKeys: string[] = [];
    for (let key = 1_000_000_000n; bigKeys.length < 20; key++) if (slotOf('bigint', key, SLOTS) === heavySlot) bigKeys.push(String(key));
    const n3 = await connectTo(cluster.servers[2]!.connection);
    try {
      await n3.query(`INSERT INTO heavy SELECT k, json_build_object('blob', repeat(md5(k::text), 200000)) FROM unnest($1::bigint[]) k`, [bigKeys]);
    } finally {
      await n3.end();
    }
    const budgetMs = 400;
    await removeNode(access, 'n3');
    const result = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {}, onlineLimits: onlineLimits({ freezeBudgetMs: budgetMs }) });
    const summary = result.summary!;
    expect(summary.state, summary.error ?? '').toBe('completed');
    expect((await withCatalog(access, readSlotMap)).owners).not.toContain('n3');
    const journal = await withCatalog(access, (catalog) => readJournal(catalog, summary.migrationId));
    const synced = journal.find((entry) => entry.slot === heavySlot && entry.step === 'sync' && entry.action === 'done')!;
    // The scan took longer than the whole budget, in one attempt, and the cutover went through.
    expect(Number(synced.detail?.['verifyMs'])).toBeGreaterThan(budgetMs);
    expect(journal.filter((entry) => entry.slot === heavySlot && entry.step === 'freeze' && entry.action === 'begin')).toHaveLength(1);
    const after = await verifyCluster(access);
    expect(after.problems).toEqual([]);
    expect(after.rowsTotal).toBe(ROWS + bigKeys.length);
  });

  it('catches a corrupted target row before the switch although the freeze verifies from row sums, rolls back cleanly, and resume then finishes', async () => {
    const { cluster, access, before } = await grownDemoCluster('bad');
    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    const migrationId = prepared.migrationId!;
    const moves = await withCatalog(access, (catalog) => listMoves(catalog, migrationId));
    const victim = moves[0]!;
    const target = await connectTo(cluster.servers[3]!.connection);
    stops.push(() => target.end());
    let corrupted: Promise<number> | undefined;
    const summary = await runMigration(migrationId, {
      access, moveConcurrencyMax: 4,
      emit: (event) => {
        // Once the victim's copy is in (and streaming), one of its copied rows changes on the target behind reshard's back:
        // before the row sums begin or after, the freeze must see it.
        if (event.type !== 'step' || event.slot !== victim.slot || event.step !== 'stream' || event.action !== 'done' || corrupted) return;
        const leaf = leafName('users', victim.slot, SLOTS);
        corrupted = target.query(`UPDATE ${leaf} SET name = name || ' (corrupted)' WHERE id = (SELECT min(id) FROM ${leaf})`).then((result) => result.rowCount ?? 0);
      },
    });
    expect(await corrupted).toBe(1);
    expect(summary.state).toBe('failed');
    expect(summary.error).toMatch(new RegExp(`slot ${victim.slot} of users differs after the final sync`));
    const journal = await withCatalog(access, (catalog) => readJournal(catalog, migrationId));
    // Caught by the freeze's verification (the sync step), never switched.
    expect(journal.some((entry) => entry.slot === victim.slot && entry.step === 'sync' && entry.action === 'failed')).toBe(true);
    expect(journal.some((entry) => entry.slot === victim.slot && entry.step === 'switch' && entry.action === 'begin')).toBe(false);
    // Other batches' slots may have switched before the failure; the victim stays its source's, and nothing is left over.
    const slotMap = await withCatalog(access, readSlotMap);
    expect(slotMap.owners[victim.slot]).toBe(before.owners[victim.slot]);
    expect(slotMap.states.every((state) => state === 'active')).toBe(true);
    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    expect(report.rowsTotal).toBe(ROWS);
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
    expect(await rowSumsLeftovers(cluster.servers)).toEqual([]);
    await expectResumeCompletes(access, cluster.servers, migrationId);
    expect(await rowSumsLeftovers(cluster.servers)).toEqual([]);
    // Every switched slot was verified from the sums of both tables, inside its freeze.
    const synced = (await withCatalog(access, (catalog) => readJournal(catalog, migrationId))).filter((entry) => entry.step === 'sync' && entry.action === 'done');
    expect(synced.length).toBeGreaterThanOrEqual(MOVED);
    expect(synced.every((entry) => entry.detail?.['tablesBySums'] === 2 && entry.detail['tablesByScan'] === 0)).toBe(true);
    // Each freeze's sequential round trips (no router here): catalog freeze, fence + replay wait, both sums (the
    // journal's freeze → sync at the same time: sync only reads), the switch with its own journal entry in its
    // statement (the attach comes before the freeze).
    const trips = [...(await withCatalog(access, (catalog) => readFreezeRoundTrips(catalog, migrationId))).values()];
    expect(trips).toHaveLength(MOVED);
    expect(trips.map((trip) => trip.total).sort((a, b) => a - b)[Math.floor(MOVED / 2)]).toBe(4);
    expect(trips.map((trip) => trip.byPhase)).toContainEqual({ acked: 1, fenced: 1, replayed: 1, verified: 0, switched: 1 });
  });

  it('fails a catch-up that never converges, rolls back cleanly, and resume then finishes', async () => {
    const { cluster, access, before } = await grownDemoCluster('cup');
    const started = performance.now();
    const result = await rebalance(access, {
      mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {},
      // The lag is never ≤ -1 bytes.
      onlineLimits: onlineLimits({ catchupLagBytesMax: -1, catchupTimeoutMs: 500 }),
    });
    const summary = result.summary!;
    expect(summary.state).toBe('failed');
    expect(summary.slotsMoved).toBe(0);
    expect(summary.error).toMatch(/catch-up of reshard_\S+ to within -1 bytes did not happen within 500 ms/);
    // Bounded by the catch-up limit, not by the 30-minute copy limit.
    expect(performance.now() - started).toBeLessThan(30_000);

    await expectRolledBackCleanly(access, cluster.servers, before, summary.migrationId);
    await expectResumeCompletes(access, cluster.servers, summary.migrationId);
  });

  /*
   * The target must reach the source on its own (the subscription's walsender
   * connection), while the coordinator reaches it too. On loopback both come
   * from 127.0.0.1 as the same database user, and pg_hba's `replication`
   * keyword matches only physical replication, so the sources are recorded
   * with their Unix socket and their pg_hba lets only the coordinator's OS
   * user (root) in by peer authentication: the target's server process (OS
   * user postgres) is refused — a source whose pg_hba admits the admin host
   * but not the other nodes. The rebalance preflight finds that first; the
   * mover's own rollback is reached by closing the door after the preflight.
   */
  it('rolls back when the target cannot connect back to the source to subscribe, and resume finishes once it can', async () => {
    const osUser = serverOsUser();
    // Peer authentication tells the coordinator (root) from the servers (postgres) only when they differ.
    expect(osUser.switched, 'this case needs the tests to run as root (servers run as another OS user)').toBe(true);
    const cluster = await servers(4, 'sub');
    const sources = cluster.servers.slice(0, 3);
    const overSocket = (server: LocalServer): ConnectionSettings => ({ ...server.connection, host: server.dataDir });

    // The demo cluster, with n1..n3 recorded at their Unix socket; the catalog stays on TCP.
    const access = accessFor(cluster.servers);
    await initCluster(access, SLOTS);
    for (const [index, server] of sources.entries()) await addNode(access, { name: `n${index + 1}`, connection: overSocket(server) });
    for (const table of DEMO_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
    expect(await loadDemoRows(access, USERS)).toBe(ROWS);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    const before = await withCatalog(access, readSlotMap);

    const originals = sources.map((server) => readFileSync(join(server.dataDir, 'pg_hba.conf'), 'utf8'));
    const restrict = async (): Promise<void> => {
      for (const [index, server] of sources.entries()) {
        writeFileSync(join(server.dataDir, 'pg_hba.conf'), `local all all peer map=reshard_edge # only root over the socket\n${originals[index]}`);
      }
      await reloadAndWait(sources, false);
    };
    for (const server of sources) appendFileSync(join(server.dataDir, 'pg_ident.conf'), '\nreshard_edge root postgres\n');
    await restrict();

    // The preflight proves each target reaches its source as its subscription will: refused, nothing recorded.
    const refused = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ReshardError);
    expect((refused as ReshardError).message).toMatch(/^node "n4" cannot reach node "n[123]" at postgres@.* for replication \(.*Peer authentication failed/);
    expect(await withCatalog(access, runningMigration)).toBeUndefined();

    // A source that stops admitting the target after the preflight: the move itself fails and rolls back.
    for (const [index, server] of sources.entries()) writeFileSync(join(server.dataDir, 'pg_hba.conf'), originals[index]!);
    await reloadAndWait(sources, true);
    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    await restrict();
    const summary = await runMigration(prepared.migrationId!, { access, emit: () => {}, moveConcurrencyMax: 4 });
    expect(summary.state).toBe('failed');
    expect(summary.slotsMoved).toBe(0);
    expect(summary.error).toContain('the target could not subscribe to the source');
    expect(summary.error).toContain('could not connect');
    expect(summary.error).toContain('Peer authentication failed');
    expect(summary.error).toMatch(/Fix: the target node must reach the source/);

    await expectRolledBackCleanly(access, cluster.servers, before, summary.migrationId);

    for (const [index, server] of sources.entries()) writeFileSync(join(server.dataDir, 'pg_hba.conf'), originals[index]!);
    await reloadAndWait(sources, true);
    await expectResumeCompletes(access, cluster.servers, summary.migrationId);
  });
});

/** Whether the servers' own OS user can log in over the Unix socket (what a subscription on another node does). */
async function serverUserCanConnect(server: LocalServer): Promise<boolean> {
  const osUser = serverOsUser();
  return execFileAsync(join(server.binaries.binDir, 'psql'), ['-X', '-A', '-t', '-h', server.dataDir, '-p', String(server.port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 1'], {
    uid: osUser.uid, gid: osUser.gid, cwd: tmpdir(), timeout: 10_000, env: { PATH: process.env['PATH'] ?? '', LC_ALL: 'C.UTF-8' },
  }).then(() => true, () => false);
}

/** Reloads pg_hba on each server and waits until the server user's socket login is (not) accepted; root's always is. */
async function reloadAndWait(all: readonly LocalServer[], serverUserAdmitted: boolean): Promise<void> {
  for (const server of all) {
    const client = await connectTo(server.connection);
    try {
      await client.query('SELECT pg_reload_conf()');
    } finally {
      await client.end();
    }
    const canProbe = existsSync(join(server.binaries.binDir, 'psql'));
    const deadline = performance.now() + 10_000;
    while (canProbe && (await serverUserCanConnect(server)) !== serverUserAdmitted) {
      if (performance.now() > deadline) throw new Error(`pg_hba reload on ${server.name} did not take effect`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (!canProbe) await new Promise((resolve) => setTimeout(resolve, 500));
    // The coordinator (root over the socket) is always admitted.
    const coordinator = await connectTo({ ...server.connection, host: server.dataDir });
    await coordinator.end();
  }
}
