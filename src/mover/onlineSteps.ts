import type pg from 'pg';
import type { MoveRecord } from '../catalog/migrationRuns.js';
import { getCluster } from '../catalog/cluster.js';
import { beginSlotFreeze, listenForRouterAcks } from './freezeSlot.js';
import { switchSlotsOwner } from '../catalog/slotMap.js';
import { assert } from '../core/assert.js';
import { slotsText } from '../core/slotsText.js';
import { errorText, ReshardError } from '../core/errors.js';
import { waitFor } from '../plumbing/waitFor.js';
import { fenceSlots } from '../node/fence.js';
import { connectNode } from '../plumbing/connectNode.js';
import { currentWalLsn, dropPublication, dropReplicationSlot, dropSubscription, replayedPast } from '../node/replication.js';
import { attachSlots, unattachedSlotLeaves } from '../node/slotPartitions.js';
import { markSlotsMoved } from '../node/slotState.js';
import { describeLeaves, type DescribedStep, type MoveStep, type SlotMoveBase } from './moveStep.js';
import type { OnlineBatch, OnlineBatchOptions } from './onlineBatchShape.js';
import { cleanUpSwitchedSlots, prepareStep, undoAttach, undoFreeze } from './sharedSteps.js';
import { streamBatch } from './streamBatch.js';
import type { RoundTripMeter } from './roundTripMeter.js';
import { verifySlotsCopyFromSums } from './verifySlotCopy.js';
import { trackSlotRows } from '../node/slotRowSums.js';

/** What the online steps of one batch work on. */
export interface OnlineBatchContext extends SlotMoveBase {
  batch: OnlineBatch;
  options: OnlineBatchOptions;
  /** The batch's moves not switched yet: the stream carries them all. */
  streaming(): MoveRecord[];
  /** Each slot's cutover, by slot: the slots cut over together share one. */
  cutovers: Map<number, CutoverState>;
  /** Sequential round trips of the batch's sessions so far. */
  roundTrips: RoundTripMeter;
  /** Slots whose row sums run on both sides since the stream caught up (their freeze need not start them). */
  rowSumsRunning: Map<number, RowSumsStart>;
}

/** How a slot's row sums were started on both sides: for the journal. */
export interface RowSumsStart {
  rowSumsBaseMs: number;
  tablesSummed: number;
}

/** The cutover of a group of slots (frozen, verified and switched together): what its steps pass forward, and the clock of the current attempt's freeze. */
export interface CutoverState {
  /** The fence's WAL position (lost after a resume: the current one is later, hence safe). */
  fencedLsn?: string;
  /** The fence's position when the subscription had replayed past it as the fence returned. */
  replayedPast?: string;
  /** The attach of this attempt found every leaf of the group attached and committed (the switch need not look again). */
  attachedChecked?: boolean;
  /** The freeze's epoch, recorded with the target's 'owned' (after a resume: the catalog's current one). */
  freezeEpoch?: number;
  frozenAt: number;
  /** The batch's round trips when the freeze began. */
  roundTripsAtFreeze: number;
  /** Time spent scanning for the verification (not waiting), left out of the freeze budget. */
  verifyMs: number;
  /** Where the write pause went, ms since the freeze began, for `status` and tuning. */
  phase: Record<string, number>;
  /** Sequential round trips since the freeze began, at the end of each phase (same names as `phase`). */
  phaseRoundTrips: Record<string, number>;
  /** Rows of the group's slots, by slot, as the verification counted them. */
  rowsBySlot: Map<number, number>;
}

export function newCutoverAttempt(state: CutoverState, roundTrips: RoundTripMeter): void {
  startFreezeClock(state, roundTrips);
  state.verifyMs = 0;
  state.rowsBySlot.clear();
  state.replayedPast = undefined;
}

/** The write pause starts: the slot is about to be frozen in the catalog. */
function startFreezeClock(state: CutoverState, roundTrips: RoundTripMeter): void {
  state.frozenAt = performance.now();
  state.roundTripsAtFreeze = roundTrips.count;
  state.phase = {};
  state.phaseRoundTrips = {};
}

type OnlineStep = MoveStep<OnlineBatchContext>;

const leaves = describeLeaves;

/** The cutover of `slots`: one state that every slot of the group shares. */
function cutoverOf(context: OnlineBatchContext, slots: readonly number[]): CutoverState {
  assert(slots.length > 0, 'a cutover step runs for at least one slot');
  const cutover = context.cutovers.get(slots[0]!);
  assert(cutover, `slot ${slots[0]}'s cutover has begun`);
  assert(slots.every((slot) => context.cutovers.get(slot) === cutover), `slots ${slots.join(', ')} are cut over together`);
  return cutover;
}

/** Every wait of the freeze so far, not the verification's scan. */
function waitedMs(cutover: CutoverState): number {
  return performance.now() - cutover.frozenAt - cutover.verifyMs;
}

function mark(context: OnlineBatchContext, cutover: CutoverState, name: string): void {
  cutover.phase[name] = Math.round(performance.now() - cutover.frozenAt);
  cutover.phaseRoundTrips[name] = context.roundTrips.count - cutover.roundTripsAtFreeze;
}

const stream: OnlineStep = {
  name: 'stream',
  describe: (view) => `on ${view.sourceName}: publish ${leaves(view)} (shared with the other slots ${view.sourceName} → ${view.targetName}) and create a logical replication slot with an exported snapshot; copy the leaves at that snapshot (parallel binary COPY into index-free leaves, then each of the parents' indexes built once per leaf); on ${view.targetName}: subscribe to the slot without a copy of its own; wait until the apply lag is small (pg_stat_replication.replay_lsn); then on both nodes: sum ${leaves(view)}'s rows and row hashes from now on (trigger + one scan), for the freeze's verification`,
  async do(context, slots) {
    // Idempotent as a whole: a resumed batch re-copies unless its subscription already streams.
    await streamBatch(context.batch, context.streaming(), context, context.options);
    // Caught up: both sides sum each slot's rows from now on, while other batches still copy, so that
    // the cutovers (serial, one per source at a time) are only attaches, freezes and switches.
    const started: RowSumsStart[] = [];
    for (const slot of slots) started.push(await startRowSums(context, slot));
    // Journaled with every slot's 'done': the batch's figures, not one entry per slot.
    return { rowSumsBaseMsMax: Math.max(0, ...started.map((start) => start.rowSumsBaseMs)), tablesSummedMin: Math.min(...started.map((start) => start.tablesSummed)) };
  },
  async undo(context) {
    // The subscription first (it holds the slot), then the slot (also one a failed subscription never took over), then the publication.
    await dropSubscription(context.target, context.batch.name);
    await dropReplicationSlot(context.source, context.batch.name);
    await dropPublication(context.source, context.batch.name);
  },
};

const freeze: OnlineStep = {
  name: 'freeze',
  describe: (view) => `on both nodes, unless the stream did (a resume, an abandoned attempt): sum ${leaves(view)}'s rows and row hashes from now on (trigger + one scan); catalog: slot ${view.slot} frozen (epoch + 1; the slots cut over with it at the same epoch); while every live router acknowledges, on ${view.sourceName}: LOCK ${leaves(view)} IN EXCLUSIVE MODE and fence them with a trigger (SQLSTATE RSM01), one transaction for the group's slots, then wait there until the subscription has replayed past the fence`,
  async do(context, slots) {
    const cutover = cutoverOf(context, slots);
    const { limits } = context.options;
    // The stream started both sides' row sums once caught up; after a resume or an abandoned attempt they start here, before the pause.
    const sums: RowSumsStart[] = [];
    for (const slot of slots) sums.push(context.rowSumsRunning.get(slot) ?? await startRowSums(context, slot));
    if (limits.routerAckWaitMs > 0) await listenForRouterAcks(context.catalog);
    // The write pause starts with the catalog's freeze (routers then hold calls for the slots).
    startFreezeClock(cutover, context.roundTrips);
    const freezing = await beginSlotFreeze(context.catalog, slots, limits.routerAckWaitMs);
    cutover.freezeEpoch = freezing.epoch;
    // The fence goes ahead while the routers acknowledge, and ends their wait (acknowledgements only spare a
    // router a refusal: a call that reaches the source first waits for the fence's route lock, then is refused
    // with RSM01 and held by its router). The final sync's wait for replay rides on the fence's round trip.
    let routersAckedMs = 0;
    const [acked, fenced] = await Promise.allSettled([
      freezing.acknowledged.then((result) => {
        routersAckedMs = performance.now() - cutover.frozenAt;
        return result;
      }),
      fenceSlots(context.source, context.tables, slots, context.modulus, {
        epoch: freezing.epoch, lockTimeoutMs: limits.freezeBudgetMs, holdersWaitMs: limits.routeHoldersWaitMs,
        replayWait: { subscription: context.batch.name, waitMs: Math.max(0, limits.freezeBudgetMs - waitedMs(cutover)) },
      }).finally(() => {
        // Once the source is fenced (and replayed), acknowledgements spare no router anything: the wait ends.
        freezing.stopWaiting();
      }),
    ]);
    if (fenced.status === 'rejected') throw fenced.reason;
    if (acked.status === 'rejected') throw acked.reason;
    const fence = fenced.value;
    const frozen = { epoch: freezing.epoch, routersBehind: acked.value.routersBehind, roundTrips: freezing.roundTrips + acked.value.roundTrips };
    // The phases stay in order: 'acked' when the acknowledgements were in, 'fenced' when both were.
    cutover.phase['acked'] = Math.round(routersAckedMs);
    // The acknowledgements' own round trips (the catalog's freeze, and a re-read for an older router's NOTIFY).
    cutover.phaseRoundTrips['acked'] = frozen.roundTrips;
    mark(context, cutover, 'fenced');
    cutover.fencedLsn = fence.lsn;
    cutover.replayedPast = fence.replayed ? fence.lsn : undefined;
    return {
      routersAckedMs, fencedMs: performance.now() - cutover.frozenAt, fencedLsn: fence.lsn, epoch: frozen.epoch, ...(fence.waitsMs ? { fenceWaitsMs: fence.waitsMs } : {}),
      rowSumsBaseMs: Math.max(...sums.map((sum) => sum.rowSumsBaseMs)), tablesSummed: Math.min(...sums.map((sum) => sum.tablesSummed)),
      ...(slots.length > 1 ? { frozenTogether: slots } : {}),
      // Sequential round trips of this step (catalog + source), the unit a distant node multiplies.
      round_trips: frozen.roundTrips + fence.roundTrips,
      ...(frozen.routersBehind.length > 0 ? { routersNotAcked: frozen.routersBehind } : {}),
      ...(fence.ended.length > 0 ? { endedSessions: fence.ended } : {}),
    };
  },
  async undo(context, slots) {
    // The source's sums end with the freeze's undo: a next attempt starts them afresh.
    for (const slot of slots) context.rowSumsRunning.delete(slot);
    await undoFreeze(context, slots, (slot) => context.cutovers.get(slot)?.freezeEpoch);
  },
};

/**
 * Both sides start summing the slot's rows (trigger + one scan each, at once), so that the
 * verification inside the freeze reads two sums instead of scanning the slot. Outside any freeze.
 */
async function startRowSums(context: OnlineBatchContext, slot: number): Promise<RowSumsStart> {
  const sumsFrom = performance.now();
  const [sourceTracked, targetTracked] = await Promise.all([context.source, context.target].map((side) =>
    trackSlotRows(side, context.tables, slot, context.modulus, context.options.limits.routeHoldersWaitMs)));
  const started = {
    rowSumsBaseMs: Math.round(performance.now() - sumsFrom),
    tablesSummed: context.tables.filter((_, index) => sourceTracked![index] && targetTracked![index]).length,
  };
  context.rowSumsRunning.set(slot, started);
  return started;
}

const sync: OnlineStep = {
  name: 'sync',
  readOnly: true,
  describe: () => `take the WAL position the fence read inside its transaction; unless the fence saw it replayed, poll every few ms until the subscription has replayed past it; compare row counts and checksums on both sides from the row sums, every slot of the group in one read a side (bounded by the freeze budget, else unfreeze and retry)`,
  async do(context, slots) {
    const cutover = cutoverOf(context, slots);
    const { limits } = context.options;
    // After a resume the fence's position is lost; the current one is later, hence safe.
    const lsn = cutover.fencedLsn ?? await currentWalLsn(context.source);
    const budgetLeft = Math.max(1, limits.freezeBudgetMs - waitedMs(cutover));
    // Seen replayed already when the fence returned (same position): no poll.
    if (cutover.replayedPast === undefined || cutover.replayedPast !== lsn) {
      await waitFor(`final sync of ${slotsText(slots)} to ${lsn}`, async () => ((await replayedPast(context.source, context.batch.name, lsn)) ? true : undefined),
        { timeoutMs: budgetLeft, pollMs: limits.finalSyncPollMs, fix: 'the cutover was abandoned and the slot unfrozen; it is retried' });
    }
    mark(context, cutover, 'replayed');
    const verifyFrom = performance.now();
    const verified = await verifySlotsCopyFromSums(context, slots, 'the final sync');
    for (const { slot, rows } of verified) cutover.rowsBySlot.set(slot, rows);
    cutover.verifyMs = performance.now() - verifyFrom;
    mark(context, cutover, 'verified');
    // The budget bounds every wait of the freeze so far, not only the replay.
    if (waitedMs(cutover) > limits.freezeBudgetMs) {
      throw new ReshardError('timeout', `the freeze of ${slotsText(slots)} waited ${Math.round(waitedMs(cutover))} ms, over its ${limits.freezeBudgetMs} ms budget`,
        'the cutover was abandoned and the slot unfrozen; it is retried');
    }
    return {
      lsn, rows: verified.reduce((sum, slot) => sum + slot.rows, 0), syncedMs: performance.now() - cutover.frozenAt, verifyMs: Math.round(cutover.verifyMs),
      // Per slot: every slot of the group proved that many tables by its sums at least, scanned that many at most.
      tablesBySums: Math.min(...verified.map((slot) => slot.bySums)), tablesByScan: Math.max(...verified.map((slot) => slot.byScan)),
    };
  },
};

const attach: OnlineStep = {
  name: 'attach',
  describe: (view) => `on ${view.targetName}: ATTACH ${leaves(view)} (proven by the CHECK, no scan; the group's slots in one transaction) and record the slot 'owned' there, refusing routes older than now; before the freeze, while the subscription still applies the source's writes to them (no router routes the slot here before the switch)`,
  async do(context, slots) {
    const cutover = cutoverOf(context, slots);
    // Before the freeze: the parents' ACCESS EXCLUSIVE lock waits for in-flight work on the target's
    // other slots, which no longer lengthens these slots' write pause. A leaf attached here is only
    // served after the switch: routers route the slot to the source until then, and the 'owned' record
    // refuses a route older than this epoch (a router that missed an earlier move of this slot).
    const epoch = (await getCluster(context.catalog)).epoch;
    const attachFrom = performance.now();
    const after = await attachSlots(context.target, context.tables, slots, context.modulus, undefined, epoch);
    cutover.attachedChecked = !after.inTransaction && after.unattached.length === 0;
    // How long the parents' lock took to come (attempts of ATTACH_LOCK_ATTEMPT_MS_MAX each), for tuning.
    return { attachMs: Math.round(performance.now() - attachFrom), lockAttempts: after.lockAttempts, ...(slots.length > 1 ? { attachedTogether: slots } : {}) };
  },
  undo: undoAttach,
};

const switchOwner: OnlineStep = {
  name: 'switch',
  describe: (view) => `catalog, one transaction: slot ${view.slot} owner := ${view.targetName} (with the slots cut over with it), state active, epoch + 1, NOTIFY (the point of no return); routers release held work to ${view.targetName}`,
  pointOfNoReturn: true,
  journalsBeginInStatement: true,
  async do(context, slots, journal) {
    const cutover = cutoverOf(context, slots);
    const { batch } = context;
    // Invariant 2 at the point of no return: the target serves every table of every slot, committed
    // (a session inside an open transaction would see its own uncommitted ATTACH).
    // Looked at by this attempt's attach after its commit; else (a resume) here.
    if (!cutover.attachedChecked) {
      for (const slot of slots) {
        const onTarget = await unattachedSlotLeaves(context.target, context.tables, slot, context.modulus);
        assert(!onTarget.inTransaction, `the target session on ${batch.target.name} is not inside a transaction before the switch of slot ${slot}`);
        assert(onTarget.unattached.length === 0, `slot ${slot} is attached on ${batch.target.name} before the switch (not: ${onTarget.unattached.map((table) => table.name).join(', ')})`);
      }
    }
    // The step's begin (after the final sync's done) is written by the switch's own statement: one commit in the pause.
    const switchEpoch = await switchSlotsOwner(context.catalog, slots, batch.source.name, batch.target.name, journal);
    mark(context, cutover, 'switched');
    // The source's tombstones, after the catalog's switch (the point of no return), never before: a crash
    // in between leaves the source frozen (refusing, retryable) rather than redirecting to a target that a
    // rollback could still drop. It must not fail this step (the catalog has switched: a failure here would
    // be taken for an unswitched move and undone); cleanup writes it before any leaf goes, if not here.
    const tombstone = await markSlotsMoved(context.source, slots, batch.target.name, switchEpoch, context.options.limits.routeHoldersWaitMs)
      .catch((error: unknown) => ({ ended: [], roundTrips: 1, deferred: errorText(error) }));
    return {
      // Where the write pause went: ms and sequential round trips (every session's, the journal's too) at the end of each phase.
      pausePhasesMs: cutover.phase, pauseRoundTrips: cutover.phaseRoundTrips, epoch: switchEpoch, round_trips: 2 + tombstone.roundTrips,
      ...(slots.length > 1 ? { switchedTogether: slots } : {}),
      ...(tombstone.ended.length > 0 ? { endedSessions: tombstone.ended } : {}),
      ...('deferred' in tombstone ? { tombstoneDeferredToCleanup: tombstone.deferred } : {}),
    };
  },
};

const cleanup: OnlineStep = {
  name: 'cleanup',
  describe: (view) => `drop the subscription (and its replication slot) and the publication; on ${view.targetName}: drop the CHECK; on ${view.sourceName}: DROP ${leaves(view)}, a few per transaction under the parent's ACCESS EXCLUSIVE lock (bounded attempts, as the attach)`,
  async do(context, slots) {
    await stream.undo!(context, slots);
    // One table's leaves per pair of sessions, tables in parallel.
    await cleanUpSwitchedSlots(context, slots, async () => {
      const { batch, options } = context;
      const source = await connectNode(batch.source, options.passwords, 'reshard cleanup');
      let target: pg.Client;
      try {
        target = await connectNode(batch.target, options.passwords, 'reshard cleanup');
      } catch (error) {
        // A target that cannot be reached must not leave the source session open.
        await source.end().catch(() => {});
        throw error;
      }
      return { source, target, release: async () => { await Promise.all([source.end(), target.end()].map((ending) => ending.catch(() => {}))); } };
    });
  },
};

/** A batch's steps for all its slots at once: leaves staged on the target, one stream for them all. */
export const ONLINE_BATCH_STEPS: readonly OnlineStep[] = [prepareStep, stream];
/** A cutover group's attach on the target, just before its cutover (outside the write pause; not retried with it). */
export const ONLINE_ATTACH_STEPS: readonly OnlineStep[] = [attach];
/** A group's cutover, its slots together: a short freeze, final sync and verification, switch (the point of no return). */
export const ONLINE_CUTOVER_STEPS: readonly OnlineStep[] = [freeze, sync, switchOwner];
/** After the switches: replication objects, CHECKs and the source's old leaves. */
export const ONLINE_CLEANUP_STEPS: readonly OnlineStep[] = [cleanup];
/** Every step of an online move, in the order one slot takes them (for --dry-run). */
export const ONLINE_MOVE_STEPS: readonly DescribedStep[] = [...ONLINE_BATCH_STEPS, ...ONLINE_ATTACH_STEPS, ...ONLINE_CUTOVER_STEPS, ...ONLINE_CLEANUP_STEPS];
/** What an unswitched online move takes back when its batch fails: every step before the point of no return. */
export const ONLINE_UNDOABLE_STEPS: readonly OnlineStep[] = [...ONLINE_BATCH_STEPS, ...ONLINE_ATTACH_STEPS, ...ONLINE_CUTOVER_STEPS.filter((step) => !step.pointOfNoReturn)];
