import { HEADROOM_FRACTION_DEFAULT, MOVE_CONCURRENCY_MAX_DEFAULT, prepareRebalance, resumeMigration, runPreparedRebalance, type DryRunMove, type MigrationSummary, type ThrottleOptions } from '../../admin/rebalance.js';
import { resumeAdoptionIfAny } from './adoptCommands.js';
import { cancelMigration, pauseMigration, resumePausedMigration, type ControlOutcome } from '../../admin/controlMigration.js';
import { percentile } from '../../core/percentile.js';
import { formatBytes } from '../../core/bytes.js';
import { badInput, ReshardError, stoppedError } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { formatMovementMatrix, formatTable } from '../../planner/index.js';
import { MigrationProgress } from '../migrationProgress.js';
import type { Output } from '../output.js';
import { parseByteSize, parsePercent, parseWholeNumber } from '../parseNumbers.js';
import { describePlan, planJson } from './planCommand.js';

export interface ThrottleCommandOptions { maxCopyRate?: string; maxLag?: string; maxWalRetained?: string; maxLatencyImpact?: string }

export interface RebalanceCommandOptions extends ThrottleCommandOptions { dryRun?: boolean; verbose?: boolean; concurrency?: string; mode?: string; headroom?: string }

/** --max-copy-rate 50MB (per second), --max-lag 256MB, --max-wal-retained 8GB. */
export function throttleOptions(options: ThrottleCommandOptions): ThrottleOptions {
  const copyBytesPerSecMax = parseByteSize(options.maxCopyRate?.replace(/\/s$/i, ''), '--max-copy-rate');
  const lagBytesMax = parseByteSize(options.maxLag, '--max-lag');
  const walRetainedBytesMax = parseByteSize(options.maxWalRetained, '--max-wal-retained');
  const maxLatencyImpact = parseLatencyImpact(options.maxLatencyImpact);
  return {
    ...(maxLatencyImpact !== undefined ? { maxLatencyImpact } : {}),
    ...(copyBytesPerSecMax !== undefined ? { copyBytesPerSecMax } : {}),
    ...(lagBytesMax !== undefined ? { lagBytesMax } : {}),
    ...(walRetainedBytesMax !== undefined ? { walRetainedBytesMax } : {}),
  };
}

/** --max-latency-impact 1.2: a factor above 1 (the other slots' p99 may grow by 20 %). */
export function parseLatencyImpact(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const factor = Number(value);
  if (value.trim() === '' || !(factor > 1) || !Number.isFinite(factor)) throw badInput(`--max-latency-impact must be a factor above 1, got "${value}"`, 'pass e.g. --max-latency-impact 1.2');
  return factor;
}

function summaryJson(summary: MigrationSummary): Record<string, unknown> {
  return {
    migration_id: summary.migrationId,
    state: summary.state,
    slots_moved: summary.slotsMoved,
    bytes_moved: summary.bytesMoved,
    rows_moved: summary.rowsMoved,
    bytes_streamed: summary.bytesStreamed,
    seconds: summary.seconds,
    ...(summary.pausesMs.length ? { pause_ms_p50: percentile(summary.pausesMs, 0.5), pause_ms_p99: percentile(summary.pausesMs, 0.99), pause_ms_max: Math.max(...summary.pausesMs) } : {}),
    ...(summary.error ? { error: summary.error } : {}),
  };
}

/**
 * A dry run for people: one line per move (slot, source → target, size,
 * tables, and the online batch or offline wave it runs in), then a summary;
 * with --verbose each move's steps follow its line. `--json` has everything.
 */
function formatDryRun(planned: readonly DryRunMove[], mode: 'online' | 'offline', verbose: boolean): string {
  const online = mode === 'online';
  // Grouped as they run: by batch (online) or wave (offline), then slot.
  const groupOf = (move: DryRunMove): number => (online ? move.batch ?? 0 : move.wave);
  const moves = [...planned].sort((a, b) => groupOf(a) - groupOf(b) || a.slot - b.slot);
  const groups = new Set(moves.map(groupOf));
  const rows = moves.map((move) => [
    String(move.slot), `${move.from} → ${move.to}`, formatBytes(move.bytes), String(move.tables), String(online ? move.batch ?? '-' : move.wave + 1),
  ]);
  const header = ['slot', 'move', 'size', 'tables', online ? 'batch' : 'wave'];
  const lines: string[] = [];
  if (verbose) {
    // The table's columns, then each move's steps under its line.
    const table = formatTable([header, ...rows]).split('\n');
    lines.push(table[0]!);
    moves.forEach((move, index) => {
      lines.push(table[index + 1]!);
      move.steps.forEach((step, stepIndex) => lines.push(`      ${stepIndex + 1}. ${step.name}: ${step.action}`));
    });
  } else {
    lines.push(formatTable([header, ...rows]));
  }
  const bytes = moves.reduce((sum, move) => sum + move.bytes, 0);
  const steps = moves[0]?.steps.map((step) => step.name).join(' → ') ?? '';
  lines.push('');
  lines.push(`Dry run (${mode}): ${moves.length} moves, ${formatBytes(bytes)}, in ${groups.size} ${online ? 'batch(es): each batch copies its slots over one publication, then switches them one at a time' : 'wave(s) under the per-node limits'}.`);
  lines.push(`Each move: ${steps}. Nothing was changed.${verbose ? '' : ' `--verbose` prints every step of every move; `--json` has them all.'}`);
  return lines.join('\n');
}

function controlJson(outcome: ControlOutcome): Record<string, unknown> {
  return { migration_id: outcome.migrationId, control: outcome.control, changed: outcome.changed, held: outcome.held };
}

export async function pauseCommand(output: Output, access: ClusterAccess): Promise<void> {
  const outcome = await pauseMigration(access);
  output.result(controlJson(outcome));
  output.text(outcome.changed
    ? `Migration ${outcome.migrationId} will pause before its next step (work in flight finishes first). Continue it with \`reshard resume\`.`
    : `Migration ${outcome.migrationId} is already paused. Continue it with \`reshard resume\`.`);
}

export async function cancelCommand(output: Output, access: ClusterAccess): Promise<void> {
  const outcome = await cancelMigration(access);
  output.result(controlJson(outcome));
  const what = outcome.held
    ? 'it starts no new step and rolls back the moves that have not switched; `reshard status` shows when it is cancelled'
    : 'it was interrupted, so the rollback happens when `reshard resume` runs it';
  output.text(`Migration ${outcome.migrationId} ${outcome.changed ? 'is being cancelled' : 'was already being cancelled'}: ${what}.`);
}

function failIfFailed(summary: MigrationSummary): void {
  if (summary.state === 'cancelled') {
    throw new ReshardError('aborted', `migration ${summary.migrationId} was cancelled; its moves that had not switched were rolled back`, 'run `reshard rebalance` to plan again');
  }
  if (summary.state === 'failed') {
    throw stoppedError(`migration ${summary.migrationId}`, summary.error, 'run `reshard resume`');
  }
}

export async function rebalanceCommand(output: Output, access: ClusterAccess, options: RebalanceCommandOptions): Promise<void> {
  const mode = options.mode ?? 'online';
  if (mode !== 'offline' && mode !== 'online') throw badInput(`--mode ${mode} is not a mover`, 'use --mode online or --mode offline');
  const moveConcurrencyMax = parseWholeNumber(options.concurrency, '--concurrency', 1, MOVE_CONCURRENCY_MAX_DEFAULT);
  const throttle = throttleOptions(options);
  const headroomFraction = parsePercent(options.headroom, '--headroom', HEADROOM_FRACTION_DEFAULT);
  const prepared = await prepareRebalance(access, { mode, dryRun: options.dryRun ?? false, headroomFraction, throttle });
  for (const warning of prepared.warnings) output.warn(warning);
  output.text(describePlan(prepared.plan));
  for (const move of prepared.deferred) output.text(`Not started: slot ${move.slot} ${move.from} → ${move.to}: ${move.reason}.`);
  const deferredJson = prepared.deferred.map((move) => ({ slot: move.slot, from: move.from, to: move.to, bytes: move.bytes, reason: move.reason }));
  if (prepared.dryRun) {
    output.text();
    output.text(formatMovementMatrix(prepared.comparison.matrix));
    output.text();
    output.text(formatDryRun(prepared.dryRun, mode, options.verbose ?? false));
    output.result({ dry_run: true, mode, ...planJson(prepared.comparison, prepared.plan, false), deferred: deferredJson, steps: prepared.dryRun });
    return;
  }
  if (prepared.migrationId === undefined) {
    output.result({ dry_run: false, ...planJson(prepared.comparison, prepared.plan, false), deferred: deferredJson, headroom_unknown: prepared.headroomUnknown, state: 'balanced' });
    return;
  }
  const progress = new MigrationProgress(output);
  const summary = await runPreparedRebalance(access, prepared.migrationId, { emit: progress.handle, moveConcurrencyMax, throttle, headroomFraction });
  output.result({ ...summaryJson(summary), mode, plan: { slots_moved: prepared.plan.slotsMoved, bytes_moved: prepared.plan.bytesMoved, waves: prepared.plan.waves }, deferred: deferredJson, headroom_unknown: prepared.headroomUnknown });
  output.text(summary.state === 'completed'
    ? `Migration ${summary.migrationId} completed: ${summary.slotsMoved} slots, ${summary.rowsMoved} rows, ${formatBytes(summary.bytesMoved)} in ${summary.seconds.toFixed(1)} s${pauseText(summary)}.`
    : `Migration ${summary.migrationId} ${summary.state} after ${summary.slotsMoved} moves.`);
  failIfFailed(summary);
}

function pauseText(summary: MigrationSummary): string {
  if (summary.pausesMs.length === 0) return '';
  return `; per-slot write pause p50 ${percentile(summary.pausesMs, 0.5).toFixed(0)} ms, max ${Math.max(...summary.pausesMs).toFixed(0)} ms`;
}

export async function resumeCommand(output: Output, access: ClusterAccess, options: { concurrency?: string } & ThrottleCommandOptions): Promise<void> {
  const moveConcurrencyMax = parseWholeNumber(options.concurrency, '--concurrency', 1, MOVE_CONCURRENCY_MAX_DEFAULT);
  const throttle = throttleOptions(options);
  if (await resumeAdoptionIfAny(output, access)) return;
  // A paused migration goes on in the process that runs it; only an interrupted one is run here.
  const unpaused = await resumePausedMigration(access);
  if (unpaused) {
    output.result(controlJson(unpaused));
    output.text(`Migration ${unpaused.migrationId} resumed: its coordinator goes on within a second.`);
    return;
  }
  const progress = new MigrationProgress(output);
  const summary = await resumeMigration(access, {
    emit: progress.handle,
    throttle,
    moveConcurrencyMax,
  });
  output.result(summaryJson(summary));
  output.text(`Migration ${summary.migrationId} ${summary.state}: ${summary.slotsMoved} slots moved in total.`);
  failIfFailed(summary);
}
