import { createMigration, runningMigration, migrationIsHeld, migrationAlreadyRunningError, reopenMigration, resumableMigration, unfinishedMoves } from '../catalog/migrations.js';
import { requestResume } from '../catalog/migrationControl.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { ReshardError } from '../core/errors.js';
import { withCatalog, type ClusterAccess } from '../coordinator/catalogAccess.js';
import type { MigrationEventSink } from '../coordinator/events.js';
import { plannerInput, readClusterSnapshot, type ClusterSnapshot } from '../coordinator/planMigration.js';
import { runMigration, type MigrationSummary, type ThrottleOptions } from '../coordinator/runMigration.js';
import { OFFLINE_MOVE_STEPS } from '../mover/offlineSteps.js';
import { ONLINE_MOVE_STEP_DESCRIPTIONS } from '../mover/onlineSteps.js';
import { assertOnlineReady } from './onlinePreflight.js';
import type { OnlineLimits } from '../mover/onlineBatch.js';
import { compareStrategies, planRebalance, type Comparison, type Plan } from '../planner/index.js';

export type MoverModeOption = 'offline' | 'online';

export interface RebalanceOptions {
  mode: MoverModeOption;
  dryRun: boolean;
  moveConcurrencyMax: number;
  emit: MigrationEventSink;
  onlineLimits?: OnlineLimits;
  throttle?: ThrottleOptions;
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
}

/**
 * Measures the cluster, plans, and (unless dry-run or already balanced)
 * records the migration with its moves, claiming the single running place.
 */
export async function prepareRebalance(access: ClusterAccess, options: Pick<RebalanceOptions, 'mode' | 'dryRun'>): Promise<PreparedRebalance> {
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
    const plan = planRebalance(input);
    const comparison = compareStrategies(input);
    if (options.dryRun || plan.moves.length === 0) return { snapshot, plan, comparison, warnings: [] as string[] };
    const warnings = options.mode === 'online' ? await assertOnlineReady(
      snapshot.nodes.filter((node) => plan.moves.some((move) => move.from === node.name || move.to === node.name)),
      access.passwords,
      (name) => snapshot.nodes.find((node) => node.name === name)?.concurrencyMax ?? 1,
    ) : [];
    const migrationId = await createMigration(catalog, {
      mode: options.mode,
      baseEpoch: snapshot.slotMap.epoch,
      plan,
      moves: plan.moves.map((move) => ({ slot: move.slot, source: move.from, target: move.to, wave: move.wave, bytesTotal: move.bytes })),
    });
    return { snapshot, plan, comparison, migrationId, warnings };
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

/** Plans a rebalance and (unless dry-run) runs it as a journaled migration. */
export async function rebalance(access: ClusterAccess, options: RebalanceOptions): Promise<RebalanceResult> {
  const prepared = await prepareRebalance(access, options);
  const { migrationId, ...result } = prepared;
  if (migrationId === undefined) return result;
  const summary = await runMigration(migrationId, {
    access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax,
    ...(options.onlineLimits ? { onlineLimits: options.onlineLimits } : {}),
    ...(options.throttle ? { throttle: options.throttle } : {}),
  });
  return { ...result, summary };
}

/** Continues an interrupted migration from its journal. */
export async function resumeMigration(access: ClusterAccess, options: Pick<RebalanceOptions, 'emit' | 'moveConcurrencyMax' | 'throttle'>): Promise<MigrationSummary> {
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
