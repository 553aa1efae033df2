import { readMigrationStatus, replicationLagBySlot, type MigrationRecord, type MigrationStatus } from '../../admin/migrationStatus.js';
import { formatBytes } from '../../core/bytes.js';
import { ReshardError, stoppedError } from '../../core/errors.js';
import { log } from '../../plumbing/log.js';
import { percentile } from '../../core/percentile.js';
import { startWaitLog, WAIT_LOG_EVERY_MS } from '../../plumbing/waitLog.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { formatTable } from '../../planner/index.js';
import type { Output } from '../output.js';
import { parseDurationMs } from '../parseDuration.js';
import { parseWholeNumber } from '../parseNumbers.js';

const logger = log('cli');

/** `status --watch` and `wait` read the catalog this often. */
const WATCH_POLL_MS = 1_000;
/** `wait` gives up after this long unless told otherwise (`--timeout`): a bound on every wait. */
export const WAIT_TIMEOUT_MS_DEFAULT = 24 * 3_600_000;
/** A running migration no coordinator holds for this long is said to be interrupted (once). */
const INTERRUPTED_NOTICE_MS = 5_000;

export interface StatusCommandOptions { migration?: string; watch?: boolean }

function migrationIdOption(value: string | undefined): number | undefined {
  return value === undefined ? undefined : parseWholeNumber(value, '--migration', 1);
}

function round1(ms: number | undefined): number | null {
  return ms === undefined ? null : Math.round(ms * 10) / 10;
}

/** The JSON `status` prints (`age_seconds` and `lag_bytes` only when `live`: they change every second). */
export function statusJson(status: MigrationStatus, lagBySlot: ReadonlyMap<number, number | undefined>, nowMs: number): Record<string, unknown> {
  const { migration, moves } = status;
  const running = migration?.state === 'running';
  return {
    migration: migration ? {
      id: migration.id, state: migration.state, mode: migration.mode,
      interrupted: running && !status.held,
      control: status.control,
      paused_since: status.pausedSince ?? null,
      created_at: migration.createdAt, finished_at: migration.finishedAt ?? null, bytes_total: migration.bytesTotal,
      slots_total: moves.length,
      slots_switched: moves.filter((move) => status.switched.has(move.slot) && move.state !== 'rolled_back').length,
      slots_done: moves.filter((move) => move.state === 'done').length,
      error: migration.error ?? null,
      failures: status.failures,
    } : null,
    moves: moves.map((move) => ({
      slot: move.slot, source: move.source, target: move.target, wave: move.wave, state: move.state, step: move.step ?? null,
      switched: status.switched.has(move.slot) && move.state !== 'rolled_back',
      bytes_total: move.bytesTotal, bytes_copied: move.bytesCopied, rows_copied: move.rowsCopied,
      age_seconds: move.startedAt ? ((move.finishedAt?.getTime() ?? nowMs) - move.startedAt.getTime()) / 1000 : null,
      lag_bytes: lagBySlot.get(move.slot) ?? null,
      // The write pause the slot saw (freeze → switch) and where it went, phase by phase.
      pause_ms: round1(move.pauseMs),
      freeze_phases_ms: status.freezePhases.get(move.slot) ?? null,
      freeze_round_trips: status.freezeRoundTrips.get(move.slot) ?? null,
      error: move.error ?? null,
    })),
    history: status.history.map((entry) => ({ id: entry.id, state: entry.state, mode: entry.mode, created_at: entry.createdAt, finished_at: entry.finishedAt ?? null })),
  };
}

/** The human view of a migration, as lines. */
function statusLines(status: MigrationStatus, lagBySlot: ReadonlyMap<number, number | undefined>, nowMs: number): string[] {
  const { migration, moves } = status;
  if (!migration) return ['No migration has run yet.'];
  const lines: string[] = [];
  const done = moves.filter((move) => move.state === 'done').length;
  const switched = moves.filter((move) => status.switched.has(move.slot) && move.state !== 'rolled_back').length;
  const interrupted = migration.state === 'running' && !status.held ? ' (interrupted: run `reshard resume`)' : '';
  const paused = status.pausedSince ? ` (paused since ${status.pausedSince.toISOString()}: \`reshard resume\` continues it)` : migration.state === 'running' && status.control === 'pause' ? ' (pausing: work in flight finishes first)' : '';
  // Splits and merges (one node for source and target, or a split --to's two): a split --all reads as one.
  const kind = moves.length > 0 && moves.every((move) => move.kind === 'split' || move.kind === 'merge' || move.source === move.target) ? 'split' : migration.mode;
  lines.push(`Migration ${migration.id} (${kind}): ${migration.state}${interrupted}${paused}, ${switched}/${moves.length} switched, ${done}/${moves.length} moves done, ` +
    `${formatBytes(moves.reduce((sum, move) => sum + move.bytesCopied, 0))} of ${formatBytes(migration.bytesTotal)}`);
  if (migration.error) lines.push(`  error: ${migration.error}`);
  // `resume` clears a failed migration's error; the failures it had before stay visible.
  const earlier = migration.state === 'failed' ? status.failures.slice(0, -1) : status.failures;
  if (earlier.length > 0) lines.push(`  failed earlier (${earlier.length}×); last at ${earlier.at(-1)!.at.toISOString()}: ${earlier.at(-1)!.error}`);
  const pauses = moves.flatMap((move) => (move.pauseMs === undefined ? [] : [move.pauseMs]));
  if (pauses.length > 0) lines.push(`  write pause per switched slot: p50 ${percentile(pauses, 0.5).toFixed(0)} ms, max ${Math.max(...pauses).toFixed(0)} ms (per move and phase: \`reshard status --json\`)`);
  const notDone = moves.filter((move) => move.state !== 'done');
  if (notDone.length > 0) {
    lines.push(formatTable([
      ['slot', 'from', 'to', 'state', 'step', 'bytes', 'lag', 'age'],
      ...notDone.slice(0, 50).map((move) => {
        const lag = lagBySlot.get(move.slot);
        const age = move.startedAt ? `${Math.round((nowMs - move.startedAt.getTime()) / 1000)} s` : '-';
        return [String(move.slot), move.source, move.target, move.state, move.step ?? '-', `${formatBytes(move.bytesCopied)} / ${formatBytes(move.bytesTotal)}`,
          lag === undefined ? '-' : formatBytes(lag), age];
      }),
    ]));
  }
  return lines;
}

/** One line that changes when the migration does (not with the clock): what `status --watch` prints off a terminal. */
function changeLine(status: MigrationStatus): string {
  const { migration, moves } = status;
  if (!migration) return 'no migration has run yet';
  const switched = moves.filter((move) => status.switched.has(move.slot) && move.state !== 'rolled_back').length;
  const done = moves.filter((move) => move.state === 'done').length;
  const inFlight = moves.filter((move) => move.state === 'running').map((move) => `slot ${move.slot} ${move.step ?? '-'}`);
  const state = migration.state === 'running' && !status.held ? 'interrupted' : status.pausedSince ? 'paused' : migration.state;
  return `migration ${migration.id} ${state}: ${switched}/${moves.length} switched, ${done} done` +
    `${inFlight.length ? `; in flight: ${inFlight.slice(0, 8).join(', ')}${inFlight.length > 8 ? ` and ${inFlight.length - 8} more` : ''}` : ''}` +
    `${migration.error ? `; error: ${migration.error}` : ''}`;
}

/** How a migration that ended is reported by a command that waited for it: nothing for completed, else its error (exit code). */
export function endedMigrationError(migration: MigrationRecord): ReshardError | undefined {
  switch (migration.state) {
    case 'running':
    case 'completed':
      return undefined;
    case 'failed':
      return stoppedError(`migration ${migration.id}`, migration.error, 'run `reshard resume`');
    case 'cancelled':
      return new ReshardError('aborted', `migration ${migration.id} was cancelled; its moves that had not switched were rolled back`, 'run `reshard rebalance` to plan again');
    case 'rolled_back':
      return new ReshardError('aborted', `migration ${migration.id} was rolled back`, 'run `reshard rebalance` to plan again');
  }
}

export async function statusCommand(output: Output, access: ClusterAccess, options: StatusCommandOptions = {}): Promise<void> {
  const migrationId = migrationIdOption(options.migration);
  if (options.watch) return watchStatus(output, access, migrationId);
  const status = await readMigrationStatus(access, migrationId);
  const lagBySlot = await replicationLagBySlot(status, access.passwords);
  const now = Date.now();
  output.result(statusJson(status, lagBySlot, now));
  for (const line of statusLines(status, lagBySlot, now)) output.text(line);
}

/**
 * Redraws the status every second on a terminal; elsewhere prints a line
 * (a JSON line with --json) each time the migration changes. Ends when the
 * migration ends, with its exit code.
 */
async function watchStatus(output: Output, access: ClusterAccess, migrationIdGiven: number | undefined): Promise<void> {
  const redraw = !output.json && Boolean(process.stdout.isTTY);
  let migrationId = migrationIdGiven;
  let previous = '';
  for (;;) {
    const status = await readMigrationStatus(access, migrationId);
    migrationId ??= status.migration?.id;
    const running = status.migration?.state === 'running';
    const lagBySlot = redraw && running ? await replicationLagBySlot(status, access.passwords) : new Map<number, number | undefined>();
    const now = Date.now();
    if (redraw) {
      output.text(`\x1b[H\x1b[2J${statusLines(status, lagBySlot, now).join('\n')}\n\n(refreshed every second; Ctrl-C stops watching, not the migration)`);
    } else {
      const line = changeLine(status);
      if (line !== previous) {
        previous = line;
        output.text(`${new Date(now).toISOString()} ${line}`);
        if (running) output.event({ type: 'status', ...statusJson(status, lagBySlot, now) });
      }
    }
    if (!status.migration || !running) {
      output.result(statusJson(status, lagBySlot, now));
      const error = status.migration ? endedMigrationError(status.migration) : undefined;
      if (error) throw error;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, WATCH_POLL_MS));
  }
}

export interface WaitCommandOptions { migration?: string; timeout?: string }

/**
 * Blocks until the running (or given) migration ends: exit 0 when it
 * completed, else the code of its end (failed, cancelled, rolled back:
 * aborted) or of the timeout.
 */
export async function waitCommand(output: Output, access: ClusterAccess, options: WaitCommandOptions): Promise<void> {
  const migrationIdGiven = migrationIdOption(options.migration);
  const timeoutMs = parseDurationMs(options.timeout, '--timeout', WAIT_TIMEOUT_MS_DEFAULT);
  const deadline = performance.now() + timeoutMs;
  let status = await readMigrationStatus(access, migrationIdGiven);
  const migration = status.migration;
  if (!migration) throw new ReshardError('not_found', 'no migration has run yet, so there is nothing to wait for', 'start one with `reshard rebalance`');
  const waitLog = startWaitLog(logger, `migration ${migration.id} to end`, timeoutMs, { migrationId: migration.id }, WAIT_LOG_EVERY_MS, { warnAfterMs: Infinity });
  let interruptedSinceMs: number | undefined;
  let interruptedSaid = false;
  try {
    while (status.migration!.state === 'running') {
      const now = performance.now();
      if (!status.held) {
        interruptedSinceMs ??= now;
        if (!interruptedSaid && now - interruptedSinceMs >= INTERRUPTED_NOTICE_MS) {
          interruptedSaid = true;
          output.warn(`migration ${migration.id} is interrupted: no reshard process runs it; waiting until one does (\`reshard resume\`) or it is rolled back (\`reshard rollback\`)`);
        }
      } else {
        interruptedSinceMs = undefined;
      }
      if (now >= deadline) {
        throw new ReshardError('timeout', `migration ${migration.id} did not end within ${options.timeout ?? `${timeoutMs / 3_600_000} h`} (${changeLine(status)})`,
          'wait longer (`reshard wait --timeout 4h`), or see what it does with `reshard status --watch`');
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(WATCH_POLL_MS, deadline - now))));
      status = await readMigrationStatus(access, migration.id);
    }
    waitLog.end('done', { state: status.migration!.state });
  } catch (error) {
    waitLog.end('failed');
    throw error;
  }
  const ended = status.migration!;
  output.result(statusJson(status, new Map(), Date.now()));
  output.text(`Migration ${ended.id} ${ended.state}.`);
  const error = endedMigrationError(ended);
  if (error) throw error;
}
