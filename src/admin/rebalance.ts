import { createMigration, runningMigration, migrationIsHeld, migrationAlreadyRunningError, reopenMigration, resumableMigration, unfinishedMoves } from '../catalog/migrations.js';
import { requestResume } from '../catalog/migrationControl.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { ReshardError, badInput } from '../core/errors.js';
import { withCatalog, type ClusterAccess } from '../coordinator/catalogAccess.js';
import type { MigrationEventSink } from '../coordinator/events.js';
import { plannerInput, readClusterSnapshot, type ClusterSnapshot } from '../coordinator/planMigration.js';
import { runMigration, type MigrationSummary, type ThrottleOptions } from '../coordinator/runMigration.js';
import { OFFLINE_MOVE_STEPS } from '../mover/offlineSteps.js';
import { ONLINE_MOVE_STEP_DESCRIPTIONS } from '../mover/onlineSteps.js';
import { assertOnlineReady } from './onlinePreflight.js';
import type { OnlineLimits } from '../mover/onlineBatch.js';
import { applyHeadroom, capacityUnknown, capacityUnknownWarning, compareStrategies, planRebalance, type Comparison, type DeferredMove, type Plan } from '../planner/index.js';
import { HEADROOM_FRACTION_DEFAULT, measureSpaces } from '../coordinator/nodeSpaces.js';
import { REPLICATION_WATCH_DEFAULT } from '../coordinator/replicationWatch.js';

export type MoverModeOption = 'offline' | 'online';

export interface RebalanceOptions {
  mode: MoverModeOption;
  dryRun: boolean;
  moveConcurrencyMax: number;
  emit: MigrationEventSink;
  onlineLimits?: OnlineLimits;
  throttle?: ThrottleOptions;
  /** Share of each node's capacity that must stay free while moving (default 10 %). */
  headroomFraction?: number;
}

export interface DryRunMove {
  slot: number;
  from: string;
  to: string;
  bytes: number;
  wave: number;
  steps: { name: string; action: string }[];
}

export interface RebalanceResult {
  plan: Plan;
  comparison: Comparison;
  snapshot: ClusterSnapshot;
  /** Present when the plan ran. */
  summary?: MigrationSummary;
  warnings: string[];
  /** Present with --dry-run: every step every move would take. */
  dryRun?: DryRunMove[];
}

export const MOVE_CONCURRENCY_MAX_DEFAULT = 4;

export interface PreparedRebalance {
  plan: Plan;
  comparison: Comparison;
  snapshot: ClusterSnapshot;
  /** The migration recorded for the plan; absent for a dry run or a balanced cluster. */
  migrationId?: number;
  /** Settings that work but cost time (online mode). */
  warnings: string[];
  dryRun?: DryRunMove[];
  /** Moves of the balanced plan left out for lack of disk headroom, each with its reason. */
  deferred: DeferredMove[];
  /** Nodes of the plan whose capacity is unknown: the headroom rule does not protect them (also in `warnings`). */
  headroomUnknown: string[];
}

/**
 * Measures the cluster, plans, and (unless dry-run or already balanced)
 * records the migration with its moves, claiming the single running place.
 */
export async function prepareRebalance(access: ClusterAccess, options: Pick<RebalanceOptions, 'mode' | 'dryRun' | 'headroomFraction' | 'throttle'>): Promise<PreparedRebalance> {
  assertMoverMode(options.mode);
  const prepared = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const running = await runningMigration(catalog);
    if (running) throw migrationAlreadyRunningError(running.id, await migrationIsHeld(catalog, running.id));
    const latest = await resumableMigration(catalog);
    if (latest && (await unfinishedMoves(catalog, latest.id)) > 0) {
      throw new ReshardError('precondition', `migration ${latest.id} failed with moves left half-done`, 'run `reshard resume` to finish them first');
    }
    const snapshot = await readClusterSnapshot(catalog, access.passwords);
    const input = plannerInput(snapshot);
    const balanced = planRebalance(input);
    const comparison = compareStrategies(input);
    const involved = snapshot.nodes.filter((node) => balanced.moves.some((move) => move.from === node.name || move.to === node.name));
    const headroomFraction = options.headroomFraction ?? HEADROOM_FRACTION_DEFAULT;
    const spaces = await measureSpaces(involved, access.passwords);
    const { plan, deferred } = applyHeadroom(balanced, spaces, {
      headroomFraction,
      walRetainedBytesMax: options.throttle?.walRetainedBytesMax ?? REPLICATION_WATCH_DEFAULT.walRetainedBytesMax,
    });
    const headroomUnknown = headroomFraction > 0 ? capacityUnknown(spaces.values()) : [];
    const headroomWarnings = headroomUnknown.length > 0 ? [capacityUnknownWarning(headroomUnknown, headroomFraction)].map((warning) => `${warning.message}. Fix: ${warning.fix}`) : [];
    if (balanced.moves.length > 0 && plan.moves.length === 0) {
      throw new ReshardError('precondition', `no move fits the disk headroom: ${deferred[0]!.reason}`,
        'free space, give the node more capacity (`reshard node add … --capacity`), add a node, or lower --headroom');
    }
    if (options.dryRun || plan.moves.length === 0) return { snapshot, plan, comparison, warnings: headroomWarnings, deferred, headroomUnknown };
    const warnings = headroomWarnings.concat(options.mode === 'online' ? await assertOnlineReady(
      snapshot.nodes.filter((node) => plan.moves.some((move) => move.from === node.name || move.to === node.name)),
      access.passwords,
      (name) => snapshot.nodes.find((node) => node.name === name)?.concurrencyMax ?? 1,
    ) : []);
    const migrationId = await createMigration(catalog, {
      mode: options.mode,
      baseEpoch: snapshot.slotMap.epoch,
      plan,
      moves: plan.moves.map((move) => ({ slot: move.slot, source: move.from, target: move.to, wave: move.wave, bytesTotal: move.bytes })),
    });
    return { snapshot, plan, comparison, migrationId, warnings, deferred, headroomUnknown };
  });
  if (!options.dryRun) return prepared;
  const tables = prepared.snapshot.tables.map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
  const dryRun = prepared.plan.moves.map((move) => ({
    slot: move.slot, from: move.from, to: move.to, bytes: move.bytes, wave: move.wave,
    steps: (options.mode === 'online' ? ONLINE_MOVE_STEP_DESCRIPTIONS : OFFLINE_MOVE_STEPS).map((step) => ({
      name: step.name,
      action: step.describe({ slot: move.slot, modulus: prepared.plan.modulus, sourceName: move.from, targetName: move.to, tables }),
    })),
  }));
  return { ...prepared, dryRun };
}

/** Library callers pass options unchecked by a CLI parser: refused before anything is read or recorded. */
function assertMoveConcurrency(moveConcurrencyMax: number): void {
  if (!Number.isSafeInteger(moveConcurrencyMax) || moveConcurrencyMax < 1) {
    throw badInput(`moveConcurrencyMax must be a whole number ≥ 1, got ${String(moveConcurrencyMax)}`, 'pass e.g. moveConcurrencyMax: 4 (--concurrency 4)');
  }
}

function assertMoverMode(mode: string): void {
  if (mode !== 'online' && mode !== 'offline') throw badInput(`mode "${String(mode)}" is not a mover`, "pass mode 'online' or 'offline' (--mode)");
}

/** Plans a rebalance and (unless dry-run) runs it as a journaled migration. */
export async function rebalance(access: ClusterAccess, options: RebalanceOptions): Promise<RebalanceResult> {
  assertMoveConcurrency(options.moveConcurrencyMax);
  const prepared = await prepareRebalance(access, options);
  const { migrationId, ...result } = prepared;
  if (migrationId === undefined) return result;
  const summary = await runMigration(migrationId, {
    access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax,
    ...(options.headroomFraction !== undefined ? { headroomFraction: options.headroomFraction } : {}),
    ...(options.onlineLimits ? { onlineLimits: options.onlineLimits } : {}),
    ...(options.throttle ? { throttle: options.throttle } : {}),
  });
  return { ...result, summary };
}

/** Continues an interrupted migration from its journal. */
export async function resumeMigration(access: ClusterAccess, options: Pick<RebalanceOptions, 'emit' | 'moveConcurrencyMax' | 'throttle'>): Promise<MigrationSummary> {
  assertMoveConcurrency(options.moveConcurrencyMax);
  const migrationId = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const resumable = await resumableMigration(catalog);
    if (!resumable) throw new ReshardError('not_found', 'no migration is waiting to be resumed', 'start one with `reshard rebalance`');
    if (await migrationIsHeld(catalog, resumable.id)) throw migrationAlreadyRunningError(resumable.id, true);
    if (resumable.state === 'failed') await reopenMigration(catalog, resumable.id);
    // A migration interrupted while paused: resuming it is the request to go on (a cancel stays and is carried out).
    await requestResume(catalog, resumable.id);
    return resumable.id;
  });
  return runMigration(migrationId, { access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax, resumed: true, ...(options.throttle ? { throttle: options.throttle } : {}) });
}
