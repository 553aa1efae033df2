import { createMigration, runningMigration, migrationIsHeld, migrationAlreadyRunningError, reopenMigration, resumableMigration, unfinishedMoves, listMoves } from '../catalog/migrationRuns.js';
import { slotExchangeOf } from '../catalog/slotExchanges.js';
import { resumableSplitAll, splitAllSlots, splitAllSummary } from './splitAllSlots.js';
import { listNodes } from '../catalog/nodes.js';
import { getCluster } from '../catalog/cluster.js';
import { listShardedTables } from '../catalog/tables.js';
import { migrationReplicationPrefix } from '../node/replication.js';
import { readControl, requestResume } from '../catalog/migrationControl.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { listReferenceTables } from '../catalog/referenceTables.js';
import { assertReferenceCopiesReady } from './referenceCopyCheck.js';
import { ReshardError, badInput } from '../core/errors.js';
import type { MoveStepName } from '../core/moveStepNames.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { plannerInput, readClusterSnapshot, type ClusterSnapshot } from '../admin/clusterSnapshot.js';
import { runMigration, type MigrationSummary, type ThrottleOptions } from '../coordinator/runMigration.js';
import { OFFLINE_MOVE_STEPS } from '../mover/offlineSteps.js';
import { ONLINE_MOVE_STEPS } from '../mover/onlineSteps.js';
import { assertOnlineReady, type OnlinePreflight } from './onlinePreflight.js';
import { assertPeersReachable, assertPendingMovesReachable, replicationPairsOf } from './peerReachability.js';
import type { OnlineLimits } from '../mover/onlineBatch.js';
import { applyHeadroom, capacityUnknown, capacityUnknownWarning, compareStrategies, planRebalance, type Comparison, type DeferredMove, type Plan, type PlanInput } from '../planner/index.js';
import { HEADROOM_FRACTION_DEFAULT, measureSpaces } from '../coordinator/nodeSpaces.js';
import { REPLICATION_WATCH_DEFAULT } from '../coordinator/replicationWatch.js';

export type { MigrationSummary, ThrottleOptions } from '../coordinator/runMigration.js';
export { HEADROOM_FRACTION_DEFAULT } from '../coordinator/nodeSpaces.js';

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
  /** Online: the batch (1-based, in the order the coordinator forms them) whose publication carries this slot. */
  batch?: number;
  /** Sharded tables whose leaf of this slot moves (colocated tables move together). */
  tables: number;
  /** The `describe` of each step object the move would run, in order. */
  steps: { name: MoveStepName; action: string }[];
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
  /** Online mode: what the plan keeps alive at once on each node, within its settings. */
  onlineLoad?: OnlinePreflight;
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
  /** Online mode: what the plan keeps alive at once on each node, within its settings. */
  onlineLoad?: OnlinePreflight;
  /** Nodes of the plan whose capacity is unknown: the headroom rule does not protect them (also in `warnings`). */
  headroomUnknown: string[];
}

/**
 * Measures the cluster, plans, and (unless dry-run or already balanced)
 * records the migration with its moves, claiming the single running place.
 */
export async function prepareRebalance(
  access: ClusterAccess,
  options: Pick<RebalanceOptions, 'mode' | 'dryRun' | 'headroomFraction' | 'throttle'> & { choosePlan?: (snapshot: ClusterSnapshot, input: PlanInput) => Plan },
): Promise<PreparedRebalance> {
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
    // Another planner (the autopilot's, by load) may choose the moves; everything else (headroom, preflight, journal) is the same.
    const balanced = options.choosePlan ? options.choosePlan(snapshot, input) : planRebalance(input);
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
    if (plan.moves.length === 0) return { snapshot, plan, comparison, warnings: headroomWarnings, deferred, headroomUnknown };
    await assertReferenceCopiesReady(access, snapshot.nodes, await listReferenceTables(catalog), [...new Set(plan.moves.map((move) => move.to))]);
    // The coordinator forms online batches from the moves in catalog order (wave, slot): the preflight does the same.
    const ordered = [...plan.moves].sort((a, b) => a.wave - b.wave || a.slot - b.slot);
    if (options.dryRun) {
      // A dry run shows the batches the run would form on these nodes now, and is refused as the run would be.
      const onlineLoad = options.mode === 'online'
        ? await assertOnlineReady(snapshot.nodes, access.passwords, ordered.map((move) => ({ slot: move.slot, source: move.from, target: move.to })))
        : undefined;
      return { snapshot, plan, comparison, warnings: headroomWarnings.concat(onlineLoad?.warnings ?? []), deferred, headroomUnknown, ...(onlineLoad ? { onlineLoad } : {}) };
    }
    // Before anything is recorded: a node that cannot carry the plan is refused with the setting to change,
    // and each target must reach its source's peer address as its subscription will.
    const onlineLoad = options.mode === 'online'
      ? await assertOnlineReady(snapshot.nodes, access.passwords, ordered.map((move) => ({ slot: move.slot, source: move.from, target: move.to })))
      : undefined;
    const warnings = headroomWarnings.concat(onlineLoad ? [...onlineLoad.warnings, ...await assertPeersReachable(replicationPairsOf(plan, snapshot.nodes), access.passwords)] : []);
    const migrationId = await createMigration(catalog, {
      mode: options.mode,
      baseEpoch: snapshot.slotMap.epoch,
      plan,
      moves: plan.moves.map((move) => ({ slot: move.slot, source: move.from, target: move.to, wave: move.wave, bytesTotal: move.bytes })),
    });
    return { snapshot, plan, comparison, migrationId, warnings, deferred, headroomUnknown, ...(onlineLoad ? { onlineLoad } : {}) };
  });
  if (!options.dryRun) return prepared;
  const tables = prepared.snapshot.tables.map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
  const ordered = [...prepared.plan.moves].sort((a, b) => a.wave - b.wave || a.slot - b.slot);
  const batchOfSlot = prepared.onlineLoad?.batchOfSlot ?? new Map<number, { batch: number; round: number }>();
  const dryRun = ordered.map((move) => ({
    slot: move.slot, from: move.from, to: move.to, bytes: move.bytes, wave: move.wave,
    ...(batchOfSlot.has(move.slot) ? { batch: batchOfSlot.get(move.slot)!.batch, round: batchOfSlot.get(move.slot)!.round } : {}),
    tables: tables.length,
    steps: (options.mode === 'online' ? ONLINE_MOVE_STEPS : OFFLINE_MOVE_STEPS).map((step) => ({
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

/** Runs the migration `prepareRebalance` recorded, reporting through `emit`. */
export async function runPreparedRebalance(access: ClusterAccess, migrationId: number, options: Pick<RebalanceOptions, 'emit' | 'moveConcurrencyMax' | 'throttle' | 'headroomFraction'>): Promise<MigrationSummary> {
  return runMigration(migrationId, {
    access,
    emit: options.emit,
    moveConcurrencyMax: options.moveConcurrencyMax,
    ...(options.throttle ? { throttle: options.throttle } : {}),
    ...(options.headroomFraction !== undefined ? { headroomFraction: options.headroomFraction } : {}),
  });
}

/** Continues an interrupted migration from its journal. */
export async function resumeMigration(access: ClusterAccess, options: Pick<RebalanceOptions, 'emit' | 'moveConcurrencyMax' | 'throttle'>): Promise<MigrationSummary> {
  assertMoveConcurrency(options.moveConcurrencyMax);
  // A split --all goes on with its own machine, one slot at a time.
  if (await resumableSplitAll(access)) return splitAllSummary(await splitAllSlots(access, { emit: options.emit }));
  const migrationId = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const resumable = await resumableMigration(catalog);
    if (!resumable) throw new ReshardError('not_found', 'no migration is waiting to be resumed', 'start one with `reshard rebalance`');
    if (await migrationIsHeld(catalog, resumable.id)) throw migrationAlreadyRunningError(resumable.id, true);
    const exchange = await slotExchangeOf(catalog, resumable.id);
    if (exchange) {
      throw new ReshardError('precondition', `migration ${resumable.id} is the ${exchange.kind} of slot ${exchange.slot}, which resume does not run`,
        `run \`reshard ${exchange.kind} --slot ${exchange.slot}\` again: it continues from its journal (or \`reshard rollback\` to undo it)`);
    }
    // A cancel only undoes; moves that will start need room on their nodes and their target to reach their source.
    if (resumable.mode === 'online' && (await readControl(catalog, resumable.id)) !== 'cancel') {
      // The same preflight as rebalance, before the migration is reopened; its own replication objects are not "others'".
      const moves = (await listMoves(catalog, resumable.id)).filter((move) => move.state !== 'done');
      await assertOnlineReady(await listNodes(catalog, { includeRemoved: true }), access.passwords, moves, {
        prefix: migrationReplicationPrefix(resumable.id), tables: await listShardedTables(catalog), modulus: (await getCluster(catalog)).modulus,
      });
      await assertPendingMovesReachable(catalog, resumable.id, access.passwords);
    }
    if (resumable.state === 'failed') await reopenMigration(catalog, resumable.id);
    // A migration interrupted while paused: resuming it is the request to go on (a cancel stays and is carried out).
    await requestResume(catalog, resumable.id);
    return resumable.id;
  });
  return runMigration(migrationId, { access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax, resumed: true, ...(options.throttle ? { throttle: options.throttle } : {}) });
}
