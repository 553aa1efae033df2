import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { readMigrationStatus } from '../../src/admin/migrationStatus.js';
import { prepareRebalance } from '../../src/admin/rebalance.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { FREEZE_PHASES } from '../../src/catalog/freezePhases.js';
import { appendJournal } from '../../src/catalog/journal.js';
import { readJournalTail } from '../../src/catalog/journalTail.js';
import { requestPause } from '../../src/catalog/migrationControl.js';
import { listMoves } from '../../src/catalog/migrationRuns.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { runMigration, type MigrationSummary } from '../../src/coordinator/runMigration.js';
import { configureLogging } from '../../src/plumbing/log.js';
import { DashboardMonitor } from '../../src/dashboard/monitor.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
/** Passwords the log must never show (the servers trust loopback, so any password works). */
const SECRETS = { catalog: 'catalog-Pa55-vis-secret', n1: 'n1-Pa55-vis-secret', n2: 'n2-Pa55-vis-secret', n3: 'n3-Pa55-vis-secret' };
const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type LogLine = Record<string, unknown> & { level: string; component: string; msg: string };

function readLog(path: string): LogLine[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as LogLine);
}

function lastJson<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as T;
}

/**
 * Forwards 127.0.0.2:port to a server on 127.0.0.1: a node reshard takes for
 * a remote one (not a loopback name it knows), whose free space it cannot measure.
 */
async function remoteLookingForwarder(targetPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.2', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

describe('logs and visibility of a real cluster', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: pg.Client;
  let config: string;
  let forwarder: Awaited<ReturnType<typeof remoteLookingForwarder>>;

  beforeAll(async () => {
    cluster = await startTestServers(3, 'vis');
    access = await createDemoCluster(cluster.servers, 1, SLOTS);
    await loadDemoRows(access, 4_000);
    catalog = await connectTo(cluster.servers[0]!.connection);
    forwarder = await remoteLookingForwarder(cluster.servers[2]!.connection.port);
    const { host, port, user, database } = cluster.servers[0]!.connection;
    config = join(cluster.baseDir, 'reshard.json');
    writeFileSync(config, JSON.stringify({
      catalog: `postgres://${user}:${SECRETS.catalog}@${host}:${port}/${database}`,
      passwords: { n1: SECRETS.n1, n2: SECRETS.n2, n3: SECRETS.n3 },
    }));
  }, 240_000);

  afterAll(async () => {
    await catalog?.end();
    await forwarder?.close();
    await cluster?.stop();
  });

  it('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(PACKAGE_VERSION);
  });

  it('a --log-file that cannot be written is one line naming it and the fix, before anything is done', async () => {
    const path = join(cluster.baseDir, 'no-such-directory', 'reshard.log');
    const result = await runCli(['--config', config, '--log-file', path, 'plan', '--json']);
    expect(result.code).toBe(2);
    expect(lastJson<{ error: { code: string } }>(result.stdout).error.code).toBe('bad_input');
    expect(result.stderr.trim()).toBe(`reshard: error: --log-file ${path} cannot be written (ENOENT). Fix: pass a file in a directory reshard may write to`);
  });

  it('a rebalance logs every step with its move, nodes and duration to --log-file, never a password; status, wait and watch report it', async () => {
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    const logFile = join(cluster.baseDir, 'reshard.log');
    const result = await runCli(['--config', config, '--log-file', logFile, '--log-level', 'debug', 'rebalance', '--json']);
    expect(result.code, result.stderr).toBe(0);
    // --json stdout stays JSON lines: the log went to its file.
    for (const line of result.stdout.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    const summary = lastJson<{ migration_id: number; state: string; slots_moved: number }>(result.stdout);
    expect(summary).toMatchObject({ state: 'completed', slots_moved: SLOTS / 2 });
    expect(existsSync(logFile)).toBe(true);

    const text = readFileSync(logFile, 'utf8');
    for (const secret of Object.values(SECRETS)) {
      expect(text).not.toContain(secret);
      expect(result.stderr).not.toContain(secret);
    }
    const lines = readLog(logFile);
    const migrationId = summary.migration_id;
    // Every step of every move, begun and done, with the move's nodes; 'done' with its duration.
    const moves = await listMoves(catalog, migrationId);
    for (const move of moves) {
      for (const step of ['prepare', 'stream', 'attach', 'freeze', 'sync', 'switch', 'cleanup']) {
        const begin = lines.find((line) => line.component === 'journal' && line['migrationId'] === migrationId && line['slot'] === move.slot && line['step'] === step && line['action'] === 'begin');
        const done = lines.find((line) => line.component === 'journal' && line['migrationId'] === migrationId && line['slot'] === move.slot && line['step'] === step && line['action'] === 'done');
        expect(begin, `slot ${move.slot} ${step} begin`).toMatchObject({ level: 'info', source: 'n1', target: 'n2' });
        expect(done, `slot ${move.slot} ${step} done`).toMatchObject({ level: 'info', source: 'n1', target: 'n2' });
        expect(done!['durationMs']).toEqual(expect.any(Number));
      }
    }
    // Waits: started and ended, with what they wait for and their bound.
    const catchUp = lines.filter((line) => line.component === 'wait' && String(line['wait']).startsWith('catch-up of '));
    expect(catchUp.some((line) => line.msg.startsWith('waiting for'))).toBe(true);
    expect(catchUp.some((line) => line['outcome'] === 'done' && typeof line['waitedMs'] === 'number' && typeof line['boundMs'] === 'number')).toBe(true);
    expect(lines.some((line) => line.component === 'mover' && String(line['wait']).startsWith('every live router to acknowledge'))).toBe(true);
    expect(lines.some((line) => line.component === 'coordinator' && line.msg === `migration ${migrationId} completed`)).toBe(true);
    expect(lines.some((line) => line.component === 'cli' && line['command'] === 'rebalance' && line['version'] === PACKAGE_VERSION)).toBe(true);

    // status --json: each switched move's write pause and where it went, phase by phase.
    const status = await runCli(['--config', config, 'status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const report = lastJson<{
      migration: { id: number; state: string; slots_total: number; slots_switched: number; slots_done: number };
      moves: { slot: number; switched: boolean; pause_ms: number | null; freeze_phases_ms: Record<string, number> | null }[];
    }>(status.stdout);
    expect(report.migration).toMatchObject({ id: migrationId, state: 'completed', slots_total: SLOTS / 2, slots_switched: SLOTS / 2, slots_done: SLOTS / 2 });
    for (const move of report.moves) {
      expect(move.switched).toBe(true);
      expect(move.pause_ms).toBeGreaterThan(0);
      // An online move attaches before its freeze: every phase but 'attached'.
      expect(Object.keys(move.freeze_phases_ms!)).toEqual(FREEZE_PHASES.filter((phase) => phase !== 'attached'));
      const phasesMs = Object.values(move.freeze_phases_ms!).reduce((sum, ms) => sum + ms, 0);
      // The phases end at the switch; the pause is measured a moment later.
      expect(phasesMs).toBeLessThanOrEqual(move.pause_ms! + 1);
    }

    // wait and status --watch on a migration that has ended: its exit code at once.
    const waited = await runCli(['--config', config, 'wait', '--json']);
    expect(waited.code, waited.stderr).toBe(0);
    expect(lastJson<{ migration: { id: number; state: string } }>(waited.stdout).migration).toMatchObject({ id: migrationId, state: 'completed' });
    const watched = await runCli(['--config', config, 'status', '--watch', '--migration', String(migrationId)]);
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout.trim()).toMatch(new RegExp(`^\\S+ migration ${migrationId} completed: ${SLOTS / 2}/${SLOTS / 2} switched, ${SLOTS / 2} done$`));
  }, 240_000);

  it('plan, rebalance and doctor say loudly that a remote node\'s capacity is unknown, naming it and the fix', async () => {
    await addNode(access, { name: 'n3', connection: { ...cluster.servers[2]!.connection, host: '127.0.0.2', port: forwarder.port } });
    const plan = await runCli(['--config', config, 'plan', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(lastJson<{ headroom_unknown: string[] }>(plan.stdout).headroom_unknown).toEqual(['n3']);
    expect(plan.stderr).toMatch(/^reshard: warning: the capacity of n3 is unknown .*the 10 % disk headroom is not checked on it.* Fix: .*`reshard node set n3 --capacity 500GB`/m);

    const dryRun = await runCli(['--config', config, 'rebalance', '--dry-run', '--json']);
    expect(dryRun.code, dryRun.stderr).toBe(0);
    expect(dryRun.stderr).toMatch(/^reshard: warning: the capacity of n3 is unknown .* Fix: .*`reshard node set n3 --capacity 500GB`/m);

    const doctor = await runCli(['--config', config, 'doctor', '--json']);
    const findings = lastJson<{ findings: { severity: string; node: string; check: string; message: string; fix: string | null }[] }>(doctor.stdout).findings;
    const capacity = findings.filter((finding) => finding.check === 'capacity');
    expect(capacity.map((finding) => [finding.node, finding.severity])).toEqual([['n1', 'ok'], ['n2', 'ok'], ['n3', 'warning']]);
    expect(capacity[2]!.fix).toMatch(/`reshard node set n3 --capacity 500GB`/);
  }, 120_000);

  it('counts a slot as switched while its cleanup is still pending (dashboard, /metrics and status), and logs the held cleanup', async () => {
    const logFile = join(cluster.baseDir, 'in-process.log');
    configureLogging({ level: 'info', file: logFile });
    // An open read on every source: DETACH … CONCURRENTLY in cleanup waits for it, after every slot has switched.
    const readers = await Promise.all([0, 1].map((index) => connectTo(cluster.servers[index]!.connection)));
    for (const reader of readers) {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM users');
    }
    const monitor = new DashboardMonitor(access, { catalogPollMs: 200, nodePollMs: 60_000, lagPollMs: 60_000, eventsMax: 50, throughputPointsMax: 10 });
    let running: Promise<MigrationSummary> | undefined;
    try {
      const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
      const migrationId = prepared.migrationId!;
      const total = prepared.plan.slotsMoved;
      expect(total).toBeGreaterThan(0);
      running = runMigration(migrationId, { access, emit: () => {}, moveConcurrencyMax: 2 });
      await monitor.start();
      await expect.poll(() => monitor.current().migration?.slots_done, { timeout: 120_000, interval: 200 }).toBe(total);
      const state = monitor.current().migration!;
      expect(state.id).toBe(migrationId);
      expect(state.moves.filter((move) => move.state === 'done')).toHaveLength(0);
      expect(state.moves.every((move) => move.outcome === 'switched')).toBe(true);
      await expect.poll(() => monitor.metrics.text(), { timeout: 5_000 }).toMatch(new RegExp(`^reshard_migration_slots_done ${total}$`, 'm'));
      const status = await readMigrationStatus(access, migrationId);
      expect(status.switched.size).toBe(total);
      expect(status.moves.every((move) => move.state === 'running' && move.step === 'cleanup')).toBe(true);
      // The held cleanup is in the log while it waits (every 10 s), naming what it waits for.
      // So is the statement itself: every statement that outlasts 10 s says which session it waits on (never its text).
      const logged = (pattern: RegExp): boolean => existsSync(logFile) && readLog(logFile).some((line) => pattern.test(line.msg));
      await expect.poll(() => logged(/^still waiting for DETACH of .* \d+ s so far/) && logged(/^still waiting for a statement on node "n[12]" to answer: \d+ s so far of at most \d+ s$/),
        { timeout: 30_000, interval: 500 }).toBe(true);
    } finally {
      for (const reader of readers) await reader.end().catch(() => {});
      const summary = await running;
      await monitor.stop();
      configureLogging({ level: 'silent' });
      expect(summary?.state).toBe('completed');
    }
    expect((await verifyCluster(access)).problems).toEqual([]);
  }, 240_000);

  it('with over 1000 journal rows, the event log shows the newest entry, a failure after id 1000 is counted and a pause after it shows', async () => {
    await removeNode(access, 'n3');
    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    const migrationId = prepared.migrationId!;
    const slot = prepared.plan.moves[0]!.slot;
    // Synthetic entries for this real migration's first move, past id 1000.
    await catalog.query(
      `INSERT INTO reshard.journal (migration_id, slot, step, action)
       SELECT $1, $2, 'prepare', CASE WHEN g % 2 = 0 THEN 'begin' ELSE 'undone' END FROM generate_series(1, 1100) g`,
      [migrationId, slot],
    );
    await requestPause(catalog, migrationId);
    await appendJournal(catalog, { migrationId, step: 'pause', action: 'begin' });
    await appendJournal(catalog, { migrationId, slot, step: 'stream', action: 'failed', detail: { error: 'a failure journaled after id 1000' } });
    await appendJournal(catalog, { migrationId, slot, step: 'prepare', action: 'begin' });
    const newestId = Number((await catalog.query<{ id: string }>('SELECT max(id)::text AS id FROM reshard.journal')).rows[0]!.id);
    expect(newestId).toBeGreaterThan(1100);
    expect((await readJournalTail(catalog, 3)).map((entry) => entry.id)).toEqual([newestId, newestId - 1, newestId - 2]);

    const monitor = new DashboardMonitor(access, { catalogPollMs: 200, nodePollMs: 60_000, lagPollMs: 60_000, eventsMax: 200, throughputPointsMax: 10 });
    try {
      await monitor.start();
      const state = monitor.current();
      expect(state.events[0]).toMatchObject({ id: String(newestId), migration_id: migrationId, slot, step: 'prepare', action: 'begin' });
      expect(state.events.some((event) => event.level === 'error' && event.message.includes('a failure journaled after id 1000'))).toBe(true);
      expect(state.migration).toMatchObject({ id: migrationId, control: 'pause', interrupted: true });
      expect(state.migration!.paused_since).not.toBeNull();
      const metrics = await monitor.metrics.text();
      expect(metrics).toMatch(/^reshard_errors_total\{kind="step_failed_stream"\} 1$/m);
      expect(metrics).toMatch(/^reshard_migration_state\{state="paused"\} 1$/m);
      expect(metrics).toMatch(/^reshard_migration_state\{state="running"\} 0$/m);
      // Later polls count the failure once.
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(await monitor.metrics.text()).toMatch(/^reshard_errors_total\{kind="step_failed_stream"\} 1$/m);
    } finally {
      await monitor.stop();
    }

    const status = await runCli(['--config', config, 'status', '--json']);
    expect(lastJson<{ migration: { id: number; control: string; paused_since: string | null } }>(status.stdout).migration)
      .toMatchObject({ id: migrationId, control: 'pause', paused_since: expect.any(String) });
    // Nobody runs it: wait gives up at its timeout with the timeout's exit code, naming the migration.
    const waited = await runCli(['--config', config, 'wait', '--timeout', '2s']);
    expect(waited.code).toBe(9);
    expect(waited.stderr.trim().split('\n').at(-1)).toMatch(new RegExp(`^reshard: error: migration ${migrationId} did not end within 2s \\(migration ${migrationId} interrupted: .*\\)\\. Fix: `));
  }, 120_000);
});
