import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { runAutopilot } from '../../src/admin/autopilot.js';
import type { AutopilotEvaluation } from '../../src/admin/autopilotEvaluation.js';
import { AUTOPILOT_DEFAULTS, type AutopilotSettings } from '../../src/admin/autopilotSettings.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { listAutopilotDecisions } from '../../src/catalog/autopilotDecisions.js';
import { parseTimeWindow } from '../../src/core/timeWindows.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const ROWS = 60_000;
const MINUTE_MS = 60_000;

/**
 * Windows have minute precision, so the autopilot reads them through a clock
 * the test moves: it runs with real time, and jumps forward only to skip to
 * one second before an edge — the edge itself is crossed by time passing.
 */
class SkippingClock {
  private offsetMs = 0;
  now = (): Date => new Date(Date.now() + this.offsetMs);
  /** From now on, it is `at` minus `beforeMs`, and time goes on. */
  skipTo(at: Date, beforeMs: number): void {
    this.offsetMs = at.getTime() - beforeMs - Date.now();
  }
}

function hhmm(date: Date): string {
  return date.toISOString().slice(11, 16);
}

describe('autopilot windows: a migration it started is paused at its window\'s end and resumed in the next', () => {
  let cluster: TestServers;
  let access: ClusterAccess;

  beforeAll(async () => {
    cluster = await startTestServers(2, 'apw');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL' });
    // Every slot is on n1: rows go straight into its partitions (about 8 MB, half of it to move).
    const n1 = await connectTo(cluster.servers[0]!.connection);
    try {
      await n1.query(`INSERT INTO kv (id, v, pad) SELECT g, g, repeat('x', 60) FROM generate_series(1, ${ROWS}) AS g`);
    } finally {
      await n1.end();
    }
    // n2 owns no slot: the node-added trigger fires at the first evaluation.
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('pauses at the edge, stays paused between windows, resumes at the next window\'s start and completes', async () => {
    // Windows computed from now: the first ends at E (2 to 3 min from now), the next opens a minute later.
    const end = new Date(Math.ceil((Date.now() + 2 * MINUTE_MS) / MINUTE_MS) * MINUTE_MS);
    const nextStart = new Date(end.getTime() + MINUTE_MS);
    const windows = [`${hhmm(new Date(end.getTime() - 5 * MINUTE_MS))}-${hhmm(end)}`, `${hhmm(nextStart)}-${hhmm(new Date(nextStart.getTime() + 4 * MINUTE_MS))}`];
    const settings: AutopilotSettings = {
      ...AUTOPILOT_DEFAULTS, periodMs: 1_000, sustainPeriods: 1, leaseMs: 5_000, moveConcurrencyMax: 1,
      windows: windows.map((window) => parseTimeWindow(window)),
      // Slow enough copies (about 4 MB at 384 kB/s) that the edge comes while the migration is in flight.
      copyBytesPerSecMax: 384 * 1024,
    };
    const clock = new SkippingClock();
    const events: { event: MigrationEvent; at: Date }[] = [];
    const evaluations: AutopilotEvaluation[] = [];
    const controller = new AbortController();
    const run = runAutopilot(access, settings, {
      clock: clock.now, signal: controller.signal,
      onEvaluation: (evaluation) => evaluations.push(evaluation),
      emit: (event) => {
        events.push({ event, at: clock.now() });
        if (event.type === 'migration_started') clock.skipTo(end, 1_500);
        if (event.type === 'migration_finished') controller.abort();
      },
    });
    try {
      const started = await until('the autopilot to start a migration', () => events.find(({ event }) => event.type === 'migration_started'), 120_000);
      expect(evaluations[0]!.action).toBe('start-nodes');
      expect(evaluations[0]!.inWindow).toBe(true);
      const migrationId = (started.event as { migrationId: number }).migrationId;

      // At the window's end (not before) the autopilot asks for a pause; the coordinator holds at its next checkpoint.
      const paused = await until('the pause at the window\'s end', () => events.find(({ event }) => event.type === 'control' && event.control === 'paused'), 120_000);
      expect(paused.at.getTime()).toBeGreaterThanOrEqual(end.getTime());
      expect(await control(migrationId)).toBe('pause');
      expect(events.some(({ event }) => event.type === 'migration_finished')).toBe(false);
      // Between the windows nothing goes on: no move finishes, the migration stays running and paused.
      const doneWhilePaused = await movesDone(migrationId);
      const total = await movesTotal(migrationId);
      expect(doneWhilePaused).toBeLessThan(total);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      expect(await movesDone(migrationId)).toBe(doneWhilePaused);
      expect(await migrationState(migrationId)).toBe('running');
      expect(events.some(({ event }) => event.type === 'control' && event.control === 'resumed')).toBe(false);

      // The next window opens: the autopilot lets its migration go on, and it completes.
      clock.skipTo(nextStart, 1_500);
      const resumed = await until('the resume in the next window', () => events.find(({ event }) => event.type === 'control' && event.control === 'resumed'), 30_000);
      expect(resumed.at.getTime()).toBeGreaterThanOrEqual(nextStart.getTime());
      const finished = await until('the migration to finish', () => events.find(({ event }) => event.type === 'migration_finished'), 180_000);
      expect((finished.event as { state: string }).state).toBe('completed');
      expect(await movesDone(migrationId)).toBe(total);
      expect(await scalar("SELECT count(*) FROM reshard.slot WHERE owner = 'n2'")).toBe(String(SLOTS / 2));
      console.log(`autopilot windows: ${windows.join(', ')}; paused ${((paused.at.getTime() - end.getTime()) / 1000).toFixed(1)} s after the end edge with ${doneWhilePaused}/${total} moves done, resumed ${((resumed.at.getTime() - nextStart.getTime()) / 1000).toFixed(1)} s after the next start, completed in ${(finished.event as { seconds: number }).seconds.toFixed(1)} s`);
      // One pause, one resume: the autopilot's own, at the two edges.
      expect(events.filter(({ event }) => event.type === 'control').map(({ event }) => (event as { control: string }).control)).toEqual(['paused', 'resumed']);
      // Both edges journaled as the autopilot's decisions, with the time and the windows.
      const catalog = await connectTo(cluster.servers[0]!.connection);
      try {
        const edges = (await listAutopilotDecisions(catalog, 50)).filter((decision) => decision.migrationId === migrationId && (decision.kind === 'pause' || decision.kind === 'resume')).reverse();
        expect(edges.map((decision) => decision.kind)).toEqual(['pause', 'resume']);
        expect(edges[0]!.summary).toMatch(new RegExp(`^outside the windows \\(${windows.join(', ')} UTC\\) at \\d\\d:\\d\\d:\\d\\d UTC: migration ${migrationId} paused at its next checkpoint`));
        expect(edges[0]!.details).toMatchObject({ edge: 'window-end', windows, control: 'run' });
        expect(new Date(edges[0]!.details['at'] as string).getTime()).toBeGreaterThanOrEqual(end.getTime());
        expect(edges[1]!.summary).toMatch(new RegExp(`^inside a window \\(${windows.join(', ')} UTC\\) again at \\d\\d:\\d\\d:\\d\\d UTC: migration ${migrationId} resumed$`));
        expect(new Date(edges[1]!.details['at'] as string).getTime()).toBeGreaterThanOrEqual(nextStart.getTime());
      } finally {
        await catalog.end();
      }
    } finally {
      controller.abort();
      await run;
    }
  });

  async function until<T>(what: string, find: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  async function scalar(sql: string, params: unknown[] = []): Promise<string> {
    const client = await connectTo(cluster.servers[0]!.connection);
    try {
      return String(Object.values((await client.query(sql, params)).rows[0]!)[0]);
    } finally {
      await client.end();
    }
  }
  const control = (id: number): Promise<string> => scalar('SELECT control FROM reshard.migration WHERE id = $1', [id]);
  const migrationState = (id: number): Promise<string> => scalar('SELECT state FROM reshard.migration WHERE id = $1', [id]);
  const movesDone = async (id: number): Promise<number> => Number(await scalar("SELECT count(*) FROM reshard.move WHERE migration_id = $1 AND state = 'done'", [id]));
  const movesTotal = async (id: number): Promise<number> => Number(await scalar('SELECT count(*) FROM reshard.move WHERE migration_id = $1', [id]));
});
