import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { appendJournal } from '../catalog/journal.js';
import { finishMigration, getMigration, holdMigration, listMoves, migrationIsHeld, reopenMigration, resumableMigration, updateMove, type MoveRecord } from '../catalog/migrationRuns.js';
import { getNode } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { createSplitAllMigration, splitAllOf, type SlotExchangePlan, type SplitAllPlan } from '../catalog/slotExchanges.js';
import { listShardedTables } from '../catalog/tables.js';
import { errorText, ReshardError } from '../core/errors.js';
import { SLOT_MODULUS_MAX } from '../core/hash.js';
import { slotIds, slotModulus, slotOwner, splitChildren, type SlotMap } from '../core/slotMap.js';
import { catalogControlRecord, CONTROL_LIMITS_DEFAULT, isCancellation, MigrationCheckpoint, type ControlLimits } from '../coordinator/migrationCheckpoint.js';
import type { MigrationSummary } from '../coordinator/runMigration.js';
import { describeSlotExchange } from '../mover/slotExchangeSteps.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { SlotTable } from '../node/slotPartitions.js';
import { exchangeSwitched, runExchangeSteps, undoExchangeInPlace } from './slotExchange.js';

export interface SplitAllOptions {
  /** Print what would split, change nothing. */
  dryRun?: boolean;
  emit?: MigrationEventSink;
  controlLimits?: ControlLimits;
}

export interface SplitAllResult {
  dryRun: boolean;
  migrationId?: number;
  /** An interrupted split-all was continued from its journal. */
  resumed: boolean;
  state: 'planned' | 'completed' | 'failed' | 'cancelled';
  /** Slots and their moduli before the split-all (as planned) and now. */
  slotsBefore: number;
  slotsAfter: number;
  moduliBefore: number[];
  moduliAfter: number[];
  /** Splits of the migration, and how many are done. */
  splits: number;
  splitsDone: number;
  rows: number;
  /** Each split of this run: its slot's write pause, freeze → switch, in ms. */
  pausesMs: number[];
  seconds: number;
  /** The steps of one split (its first), as --dry-run prints them. */
  steps: { step: string; action: string }[];
  error?: string;
}

/**
 * The splits of every slot of the map's smallest modulus m, in slot order:
 * slot r of m → r and r + m of 2m. On a map of one modulus that is every
 * slot; after a cancelled split-all (or single splits) it is the slots not
 * split yet, so running it again finishes the doubling instead of splitting
 * the split slots once more.
 */
export function planSplitAll(map: SlotMap): SlotExchangePlan[] {
  const smallest = Math.min(...slotIds(map).map((slot) => slotModulus(map, slot)));
  return slotIds(map).filter((slot) => slotModulus(map, slot) === smallest).map((slot) => {
    const modulus = slotModulus(map, slot);
    const { low, high, modulus: childModulus } = splitChildren(map, slot);
    if (childModulus > SLOT_MODULUS_MAX) {
      throw new ReshardError('bad_input', `slot ${slot} has modulus ${modulus}; its children would pass PostgreSQL's largest modulus ${SLOT_MODULUS_MAX}`, 'split single slots with `reshard split --slot N` instead');
    }
    const node = slotOwner(map, slot);
    return { kind: 'split', slot, node, replaced: [slot], replacements: [{ slot: low, modulus: childModulus }, { slot: high, modulus: childModulus }], replacedModulus: modulus };
  });
}

function moduliOf(map: SlotMap): number[] {
  return [...new Set(slotIds(map).map((slot) => slotModulus(map, slot)))].sort((a, b) => a - b);
}

/**
 * `reshard split --all`: doubles the modulus of every slot (of the smallest modulus, see `planSplitAll`; the gradual
 * expansion's 3 → 6 → 12), as one migration that splits one slot at a time
 * on its own node with the split's online steps — writes to the other slots
 * never pause. Between two splits it honours pause and cancel (`reshard
 * pause|resume|cancel`; a cancel keeps the slots split so far and starts no
 * other). Run again (or `reshard resume`) after a crash, it continues from
 * its journal: the split in flight from its step, then the rest.
 */
export async function splitAllSlots(access: ClusterAccess, options: SplitAllOptions = {}): Promise<SplitAllResult> {
  const started = Date.now();
  const emit = options.emit ?? (() => {});
  const catalog = await connectCatalog(access, 'reshard split --all');
  const nodes = new Map<string, pg.Client>();
  try {
    await assertCatalogCurrent(catalog);
    const cluster = await getCluster(catalog);
    const running = await resumableMigration(catalog);
    const interrupted = running ? await splitAllOf(catalog, running.id) : undefined;
    if (running && interrupted && (await migrationIsHeld(catalog, running.id))) {
      throw new ReshardError('conflict', `split --all (migration ${running.id}) is running in another process`, 'follow it with `reshard status`, or pause it with `reshard pause`');
    }
    const map = await readSlotMap(catalog);
    const plan: SplitAllPlan = interrupted ?? { kind: 'split-all', splits: planSplitAll(map) };
    const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
    const first = plan.splits[0]!;
    const steps = describeSlotExchange({ kind: 'split', nodeName: first.node, tables, replacedModulus: first.replacedModulus,
      exchange: { clusterModulus: cluster.modulus, replaced: first.replaced, replacements: first.replacements, kind: 'split' } });
    const moduliBefore = [...new Set(plan.splits.map((split) => split.replacedModulus))].sort((a, b) => a - b);
    const base = {
      dryRun: options.dryRun === true, resumed: interrupted !== undefined, slotsBefore: plan.splits.length, moduliBefore, splits: plan.splits.length, steps,
    };
    if (options.dryRun) {
      return { ...base, state: 'planned', slotsAfter: 2 * plan.splits.length, moduliAfter: moduliBefore.map((modulus) => 2 * modulus), splitsDone: 0, rows: 0, pausesMs: [], seconds: 0 };
    }
    if (tables.length === 0) {
      throw new ReshardError('precondition', 'the cluster has no sharded table, so a slot has no partition to split', 'create a table with `reshard table create` first, or nothing needs splitting');
    }
    let migrationId: number;
    if (running && interrupted) {
      migrationId = running.id;
      if (running.state === 'failed') await reopenMigration(catalog, migrationId);
    } else {
      migrationId = await createSplitAllMigration(catalog, plan, cluster.epoch);
    }
    if (!(await holdMigration(catalog, migrationId))) {
      throw new ReshardError('conflict', `split --all (migration ${migrationId}) is running in another process`, 'follow it with `reshard status`');
    }
    return { ...base, ...(await runExchangeMigration({ access, catalog, nodes, migrationId, plan, tables, clusterModulus: cluster.modulus, resumed: base.resumed, emit, started, ...(options.controlLimits ? { controlLimits: options.controlLimits } : {}) })) };
  } finally {
    for (const node of nodes.values()) await node.end().catch(() => {});
    await catalog.end().catch(() => {});
  }
}

type ExchangeRunResult = Pick<SplitAllResult, 'migrationId' | 'state' | 'slotsAfter' | 'moduliAfter' | 'splitsDone' | 'rows' | 'pausesMs' | 'seconds' | 'error'>;

/**
 * The one loop of a split-all (and of the merge-all that rolls one back):
 * each exchange not done yet, in order, on its node, with pause and cancel
 * honoured between two (the one in flight, begun by an interrupted run, is
 * finished forward). A cancel keeps what was done and starts nothing more.
 */
async function runExchangeMigration(run: {
  access: ClusterAccess; catalog: pg.Client; nodes: Map<string, pg.Client>; migrationId: number; plan: SplitAllPlan; tables: readonly SlotTable[];
  clusterModulus: number; resumed: boolean; emit: MigrationEventSink; started: number; controlLimits?: ControlLimits;
}): Promise<ExchangeRunResult> {
  const { access, catalog, nodes, migrationId, plan, tables, emit, started } = run;
  const verb = plan.kind === 'merge-all' ? 'merge' : 'split';
  // The checkpoint reads control on its own session: the exchange's session may be inside a step.
  const control = await connectCatalog(access, `reshard ${verb} --all (control)`);
  const checkpoint = new MigrationCheckpoint(catalogControlRecord(control, migrationId), emit, run.controlLimits ?? CONTROL_LIMITS_DEFAULT);
  const moves = new Map((await listMoves(catalog, migrationId)).map((move: MoveRecord) => [move.slot, move]));
  let splitsDone = [...moves.values()].filter((move) => move.state === 'done').length;
  let rows = [...moves.values()].reduce((total, move) => total + (move.state === 'done' ? move.rowsCopied : 0), 0);
  const pausesMs: number[] = [];
  emit({ type: 'migration_started', migrationId, mode: 'online', moves: plan.splits.length, bytesTotal: 0, resumed: run.resumed });
  let failure: unknown;
  try {
    for (const split of plan.splits) {
      const move = moves.get(split.slot);
      if (move?.state === 'done') continue;
      // A split begun by an interrupted run is finished forward (its own steps know how far it got); a new one may be cancelled.
      await checkpoint.pass({ cancellable: move?.state === 'pending' || move?.state === 'rolled_back' });
      const splitStarted = performance.now();
      const node = await nodeSession(nodes, split.node, async () => connectNode(await getNode(catalog, split.node), access.passwords, `reshard ${verb} --all`));
      const outcome = await runExchangeSteps({ catalog, node, migrationId, plan: split, tables, clusterModulus: run.clusterModulus, emit });
      splitsDone += 1;
      rows += outcome.rows ?? 0;
      if (outcome.pauseMs !== undefined) pausesMs.push(outcome.pauseMs);
      emit({
        type: 'move_done', migrationId, slot: split.slot, source: split.node, target: split.node, bytes: 0, rows: outcome.rows ?? 0,
        seconds: (performance.now() - splitStarted) / 1000, ...(outcome.pauseMs !== undefined ? { pauseMs: outcome.pauseMs } : {}),
      });
    }
  } catch (error) {
    failure = error;
  } finally {
    await control.end().catch(() => {});
  }
  const seconds = (Date.now() - started) / 1000;
  const after = await readSlotMap(catalog);
  const now = { slotsAfter: slotIds(after).length, moduliAfter: moduliOf(after), splitsDone, rows, pausesMs, seconds };
  if (failure !== undefined) {
    const error = errorText(failure);
    const state = isCancellation(failure) ? 'cancelled' : 'failed';
    if (state === 'cancelled') {
      // Nothing of the splits not started was changed: they are recorded as not done, and the slots split so far stay split.
      for (const move of await listMoves(catalog, migrationId)) {
        if (move.state === 'pending') await updateMove(catalog, migrationId, move.slot, { state: 'rolled_back', error: `not started: ${verb} --all was cancelled` });
      }
      await appendJournal(catalog, { migrationId, step: 'cancel', action: 'done', detail: { splitsDone } });
    }
    await finishMigration(catalog, migrationId, state, error);
    emit({ type: 'migration_finished', migrationId, state, seconds, slotsMoved: splitsDone, bytesMoved: 0, error });
    return { migrationId, state, ...now, error };
  }
  await finishMigration(catalog, migrationId, 'completed');
  emit({ type: 'migration_finished', migrationId, state: 'completed', seconds, slotsMoved: splitsDone, bytesMoved: 0 });
  return { migrationId, state: 'completed', ...now };
}

async function nodeSession(sessions: Map<string, pg.Client>, name: string, connect: () => Promise<pg.Client>): Promise<pg.Client> {
  const open = sessions.get(name);
  if (open) return open;
  const session = await connect();
  sessions.set(name, session);
  return session;
}

/** Whether the migration waiting to be resumed is a split-all (then `reshard resume` continues it with `splitAllSlots`). */
export async function resumableSplitAll(access: ClusterAccess): Promise<boolean> {
  const catalog = await connectCatalog(access, 'reshard resume');
  try {
    const running = await resumableMigration(catalog);
    return running !== undefined && (await splitAllOf(catalog, running.id)) !== undefined;
  } finally {
    await catalog.end().catch(() => {});
  }
}

/** A split-all's result in the shape `reshard resume` reports a migration. */
export function splitAllSummary(result: SplitAllResult): MigrationSummary {
  const state = result.state === 'planned' ? 'failed' : result.state;
  return {
    migrationId: result.migrationId ?? 0, state, slotsMoved: result.splitsDone, bytesMoved: 0, rowsMoved: result.rows,
    seconds: result.seconds, pausesMs: result.pausesMs, bytesStreamed: 0, ...(result.error ? { error: result.error } : {}),
  };
}

export interface SplitAllRollback {
  /** Slots whose split was in flight and had not switched: undone in place. */
  undoneSlots: number[];
  /** Slots merged back (by a merge-all migration, when there were any). */
  mergedSlots: number[];
  merge?: SplitAllResult;
}

/**
 * `reshard rollback` of a split-all: an unfinished one is stopped first (its
 * split in flight undone in place before its switch, finished after it; the
 * rest not started), then every slot it split is merged back by one merge-all
 * migration — the same machine, one slot at a time, with pause, cancel and
 * resume. A merge-all itself is taken back by `split --all`.
 */
export async function rollbackSplitAll(access: ClusterAccess, migrationId: number, plan: SplitAllPlan, emit: MigrationEventSink = () => {}): Promise<SplitAllRollback> {
  if (plan.kind === 'merge-all') {
    throw new ReshardError('precondition', `migration ${migrationId} merged split slots back (the rollback of a split --all); rollback does not redo the splits`, 'run `reshard split --all` to split them again');
  }
  const started = Date.now();
  const catalog = await connectCatalog(access, 'reshard rollback (split --all)');
  const nodes = new Map<string, pg.Client>();
  try {
    const migration = await getMigration(catalog, migrationId);
    const undoneSlots: number[] = [];
    const cluster = await getCluster(catalog);
    const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
    const node = (name: string): Promise<pg.Client> => nodeSession(nodes, name, async () => connectNode(await getNode(catalog, name), access.passwords, 'reshard rollback (split --all)'));
    if (migration.state === 'running' || migration.state === 'failed') {
      if (!(await holdMigration(catalog, migrationId))) {
        throw new ReshardError('conflict', `split --all (migration ${migrationId}) is running in another process`, 'cancel it with `reshard cancel`, wait for it to end, then roll back');
      }
      const map = await readSlotMap(catalog);
      for (const move of await listMoves(catalog, migrationId)) {
        const split = plan.splits.find((candidate) => candidate.slot === move.slot);
        if (!split || move.state === 'done') continue;
        if (move.state === 'pending' || move.state === 'rolled_back') {
          await updateMove(catalog, migrationId, move.slot, { state: 'rolled_back', error: 'not started: split --all was rolled back' });
          continue;
        }
        const run = { catalog, node: await node(split.node), migrationId, plan: split, tables, clusterModulus: cluster.modulus, emit };
        // Past its switch a split is finished (then merged back with the rest); before it, undone in place.
        if (exchangeSwitched(map, split)) {
          await runExchangeSteps(run);
        } else {
          await undoExchangeInPlace(run);
          undoneSlots.push(split.slot);
        }
      }
      await finishMigration(catalog, migrationId, 'rolled_back', 'rolled back on request');
    }
    const map = await readSlotMap(catalog);
    const done = new Set((await listMoves(catalog, migrationId)).filter((move) => move.state === 'done').map((move) => move.slot));
    const merges: SlotExchangePlan[] = plan.splits.filter((split) => done.has(split.slot) && exchangeSwitched(map, split)).map((split) => {
      const [low, high] = split.replacements.map((child) => child.slot) as [number, number];
      const lowOwner = slotOwner(map, low);
      const highOwner = slotOwner(map, high);
      if (lowOwner !== highOwner || slotModulus(map, low) !== 2 * split.replacedModulus || slotModulus(map, high) !== 2 * split.replacedModulus) {
        throw new ReshardError('precondition', `slots ${low} and ${high} (split by migration ${migrationId}) are no longer two siblings on one node`,
          'roll back the later migrations first, or merge them by hand with `reshard merge`');
      }
      return { kind: 'merge', slot: split.slot, node: lowOwner, replaced: [low, high], replacements: [{ slot: split.slot, modulus: split.replacedModulus }], replacedModulus: 2 * split.replacedModulus };
    });
    if (merges.length === 0) return { undoneSlots, mergedSlots: [] };
    const mergeAll: SplitAllPlan = { kind: 'merge-all', splits: merges };
    const mergeId = await createSplitAllMigration(catalog, mergeAll, (await getCluster(catalog)).epoch);
    if (!(await holdMigration(catalog, mergeId))) throw new ReshardError('conflict', `merge-all (migration ${mergeId}) is running in another process`, 'follow it with `reshard status`');
    const ran = await runExchangeMigration({ access, catalog, nodes, migrationId: mergeId, plan: mergeAll, tables, clusterModulus: cluster.modulus, resumed: false, emit, started });
    const moduliBefore = [...new Set(merges.map((merge) => merge.replacedModulus))].sort((a, b) => a - b);
    const merge: SplitAllResult = { dryRun: false, resumed: false, slotsBefore: slotIds(map).length, moduliBefore, splits: merges.length, steps: [], ...ran };
    const merged = new Set((await listMoves(catalog, mergeId)).filter((move) => move.state === 'done').map((move) => move.slot));
    return { undoneSlots, mergedSlots: merges.map((item) => item.slot).filter((slot) => merged.has(slot)), merge };
  } finally {
    for (const session of nodes.values()) await session.end().catch(() => {});
    await catalog.end().catch(() => {});
  }
}
