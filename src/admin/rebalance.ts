import { createMigration, runningMigration, migrationIsHeld, migrationAlreadyRunningError } from '../catalog/migrations.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { ReshardError } from '../core/errors.js';
import { withCatalog, type ClusterAccess } from '../coordinator/catalogAccess.js';
import type { MigrationEventSink } from '../coordinator/events.js';
import { planForSnapshot, plannerInput, readClusterSnapshot, type ClusterSnapshot } from '../coordinator/planMigration.js';
import { runMigration, type MigrationSummary } from '../coordinator/runMigration.js';
import { OFFLINE_MOVE_STEPS } from '../mover/offlineSteps.js';
import { compareStrategies, type Comparison, type Plan } from '../planner/index.js';

export interface RebalanceOptions {
  mode: 'offline';
  dryRun: boolean;
  moveConcurrencyMax: number;
  emit: MigrationEventSink;
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
  /** Present with --dry-run: every step every move would take. */
  dryRun?: DryRunMove[];
}

export const MOVE_CONCURRENCY_MAX_DEFAULT = 4;

/** Plans a rebalance and (unless dry-run) runs it as a journaled migration. */
export async function rebalance(access: ClusterAccess, options: RebalanceOptions): Promise<RebalanceResult> {
  const prepared = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const running = await runningMigration(catalog);
    if (running) throw migrationAlreadyRunningError(running.id, await migrationIsHeld(catalog, running.id));
    const snapshot = await readClusterSnapshot(catalog, access.passwords);
    const plan = planForSnapshot(snapshot);
    const comparison = compareStrategies(plannerInput(snapshot));
    if (options.dryRun || plan.moves.length === 0) return { snapshot, plan, comparison, migrationId: undefined };
    const migrationId = await createMigration(catalog, {
      mode: options.mode,
      baseEpoch: snapshot.slotMap.epoch,
      plan,
      moves: plan.moves.map((move) => ({ slot: move.slot, source: move.from, target: move.to, wave: move.wave, bytesTotal: move.bytes })),
    });
    return { snapshot, plan, comparison, migrationId };
  });
  const { snapshot, plan, comparison, migrationId } = prepared;
  if (options.dryRun) {
    const tables = snapshot.tables.map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
    const dryRun = plan.moves.map((move) => ({
      slot: move.slot, from: move.from, to: move.to, bytes: move.bytes, wave: move.wave,
      steps: OFFLINE_MOVE_STEPS.map((step) => ({
        name: step.name,
        action: step.describe({ slot: move.slot, modulus: plan.modulus, sourceName: move.from, targetName: move.to, tables }),
      })),
    }));
    return { plan, comparison, snapshot, dryRun };
  }
  if (migrationId === undefined) return { plan, comparison, snapshot };
  const summary = await runMigration(migrationId, { access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax });
  return { plan, comparison, snapshot, summary };
}

/** Continues an interrupted migration from its journal. */
export async function resumeMigration(access: ClusterAccess, options: Pick<RebalanceOptions, 'emit' | 'moveConcurrencyMax'>): Promise<MigrationSummary> {
  const migrationId = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const running = await runningMigration(catalog);
    if (!running) throw new ReshardError('not_found', 'no migration is waiting to be resumed', 'start one with `reshard rebalance`');
    if (await migrationIsHeld(catalog, running.id)) throw migrationAlreadyRunningError(running.id, true);
    return running.id;
  });
  return runMigration(migrationId, { access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax, resumed: true });
}
