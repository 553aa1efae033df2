import type pg from 'pg';
import { appendJournal, beginStep, completedSteps, finishAndBeginStep, readJournal, WHOLE_MOVE_STEP } from '../catalog/journal.js';
import { updateMove, type MoveRecord } from '../catalog/migrationRuns.js';
import { peerConnectionOf, type NodeRecord } from '../catalog/nodes.js';
import { setSlotState, switchSlotOwner } from '../catalog/slotMap.js';
import { assert } from '../core/assert.js';
import { ReshardError } from '../core/errors.js';
import { quoteQualified } from '../core/identifier.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { sleep, waitFor, withTimeout } from '../plumbing/waitFor.js';
import { fenceSlot, unfenceSlot } from '../node/fence.js';
import type { CopyGate } from '../node/copyMeter.js';
import { leafName } from '../node/leafName.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import {
  currentWalLsn, dropPublication, dropReplicationSlot, dropSubscription, ensurePublication, ensureSubscription,
  replayedPast, replicationLagBytes, subscriptionExists,
} from '../node/replication.js';
import { copyLeavesAtSnapshot, createSlotWithExportedSnapshot } from '../node/snapshotCopy.js';
import {
  attachSlot, detachAndDropSlotLeaf, detachSlotLeafForUndo, unattachedSlotLeaves, dropSlotBoundConstraint, dropStagedSlotLeaf, stageSlotLeaves,
  type SlotTable,
} from '../node/slotPartitions.js';
import { slotStatsOnBoth } from '../node/slotStats.js';
import { freezeSlotForRouters, ROUTER_ACK_WAIT_MS_DEFAULT } from './freezeSlot.js';
import { getCluster } from '../catalog/cluster.js';
import { markSlotMoved, markSlotNotAttached, ROUTE_HOLDERS_WAIT_MS_DEFAULT } from '../node/slotState.js';
import { settleCopyProgress } from './settleCopyProgress.js';
import { replicationSlotStatus, subscriptionWorkerStatus } from '../node/replicationStatus.js';
import { subscriptionFailure } from './subscriptionHealth.js';

/** Bounds of the online mover; every wait has one. */
export interface OnlineLimits {
  /** Initial copy of the whole batch. */
  syncTimeoutMs: number;
  /** Catch-up is done when the apply worker is this close to the source's WAL. */
  catchupLagBytesMax: number;
  catchupTimeoutMs: number;
  /**
   * Longest a slot's freeze may spend waiting (routers, fence, replay, the
   * attach lock) before its cutover is abandoned (unfrozen, retried). The
   * verification's scan is not a wait: its time grows with the slot's size,
   * and counting it made every slot above a few hundred MB fail its cutover.
   */
  freezeBudgetMs: number;
  finalSyncPollMs: number;
  freezeAttemptsMax: number;
  /** Parallel COPY streams of one batch's initial copy. */
  copyLanes: number;
  /** Longest the freeze waits for routers' acknowledgements (an optimisation, never needed for correctness). */
  routerAckWaitMs: number;
  /** Longest the fence and the switch wait for transactions left open on the slot before ending them. */
  routeHoldersWaitMs: number;
}

export const ONLINE_LIMITS_DEFAULT: OnlineLimits = {
  syncTimeoutMs: 30 * 60_000,
  catchupLagBytesMax: 256 * 1024,
  catchupTimeoutMs: 5 * 60_000,
  freezeBudgetMs: 3_000,
  finalSyncPollMs: 3,
  freezeAttemptsMax: 3,
  copyLanes: 2,
  routerAckWaitMs: ROUTER_ACK_WAIT_MS_DEFAULT,
  routeHoldersWaitMs: ROUTE_HOLDERS_WAIT_MS_DEFAULT,
};

/** Moves between one source and one target that share a publication and a subscription. */
export interface OnlineBatch {
  migrationId: number;
  /** Publication, subscription and replication slot name. */
  name: string;
  source: NodeRecord;
  target: NodeRecord;
  moves: MoveRecord[];
  modulus: number;
  tables: readonly SlotTable[];
}

export interface OnlineBatchConnections {
  source: pg.ClientBase;
  target: pg.ClientBase;
  catalog: pg.ClientBase;
}

export interface OnlineBatchResult {
  /** Moves that reached the switch, with the write pause each slot saw (freeze → switch). */
  switched: { slot: number; pauseMs: number; rows: number; bytes: number }[];
}

function errorText(error: unknown): string {
  return error instanceof ReshardError ? error.line() : error instanceof Error ? error.message : String(error);
}

export interface OnlineBatchOptions {
  emit: MigrationEventSink;
  limits: OnlineLimits;
  passwords: PasswordLookup;
  /** Paces the initial copy (rate cap, holds while replication lags); unpaced when absent. */
  copyGate?: CopyGate;
}

/**
 * The online mover for one batch, in three phases the coordinator can
 * interleave across batches: `stream` (prepare every slot's leaves on the
 * target; one publication + replication slot copies at a snapshot and
 * streams them all), `cutOver` (slot by slot a short freeze, final sync,
 * verification, attach and switch) and `cleanUp`. Running every batch's
 * stream before any cutover keeps the cutovers — the write pauses — away from
 * the CPU the copies use. Every step is journaled per slot; `rollBack` undoes
 * every slot not yet switched and cleans up those that were.
 */
export class OnlineBatchRun {
  private readonly switched = new Set<number>();
  private readonly result: OnlineBatchResult = { switched: [] };
  private readonly startedMs = Date.now();

  private constructor(
    readonly batch: OnlineBatch,
    private readonly connections: OnlineBatchConnections,
    private readonly options: OnlineBatchOptions,
    private readonly doneBySlot: Map<number, Set<string>>,
    private readonly journaled: Journaled,
  ) {
    for (const move of batch.moves) {
      if (!doneBySlot.get(move.slot)?.has('switch')) continue;
      // Switched before a resume: counted as moved once its cleanup is done.
      this.switched.add(move.slot);
      this.result.switched.push({ slot: move.slot, pauseMs: move.pauseMs ?? 0, rows: move.rowsCopied, bytes: move.bytesTotal });
    }
  }

  static async open(batch: OnlineBatch, connections: OnlineBatchConnections, options: OnlineBatchOptions): Promise<OnlineBatchRun> {
    const { migrationId } = batch;
    const { catalog } = connections;
    const { emit } = options;
    const doneBySlot = new Map<number, Set<string>>();
    for (const move of batch.moves) doneBySlot.set(move.slot, completedSteps(await readJournal(catalog, migrationId, move.slot)));
    const journaled: Journaled = {
      run(slot, step, work) {
        return journaled.runChain(slot, [{ step, work }]);
      },
      async runChain(slot, steps) {
        /** The step whose work is done but whose 'done' is not journaled yet. */
        let unrecorded: { step: string; detail: Record<string, unknown> | void } | undefined;
        const recorded = (): void => {
          doneBySlot.get(slot)?.add(unrecorded!.step);
          emit({ type: 'step', migrationId, slot, step: unrecorded!.step, action: 'done' });
        };
        for (const { step, work } of steps) {
          if (doneBySlot.get(slot)?.has(step)) continue;
          if (unrecorded) {
            await finishAndBeginStep(catalog, { migrationId, slot, done: unrecorded.step, ...(unrecorded.detail ? { detail: unrecorded.detail } : {}), begin: step });
            recorded();
          } else {
            await beginStep(catalog, { migrationId, slot, step });
          }
          emit({ type: 'step', migrationId, slot, step, action: 'begin' });
          unrecorded = { step, detail: await work() };
        }
        if (unrecorded) {
          await appendJournal(catalog, { migrationId, slot, step: unrecorded.step, action: 'done', ...(unrecorded.detail ? { detail: unrecorded.detail } : {}) });
          recorded();
        }
      },
      async runForSlots(slots, step, work) {
        const pending = slots.filter((slot) => !doneBySlot.get(slot)?.has(step));
        if (pending.length === 0) return;
        for (const slot of pending) {
          await beginStep(catalog, { migrationId, slot, step });
          emit({ type: 'step', migrationId, slot, step, action: 'begin' });
        }
        await work();
        for (const slot of pending) {
          await appendJournal(catalog, { migrationId, slot, step, action: 'done' });
          doneBySlot.get(slot)?.add(step);
          emit({ type: 'step', migrationId, slot, step, action: 'done' });
        }
      },
      forget(slot, steps) {
        for (const step of steps) doneBySlot.get(slot)?.delete(step);
      },
    };
    return new OnlineBatchRun(batch, connections, options, doneBySlot, journaled);
  }

  hasSwitched(slot: number): boolean {
    return this.switched.has(slot);
  }

  /** The slots switched so far, with their pauses. */
  results(): OnlineBatchResult {
    return this.result;
  }

  private unswitched(): MoveRecord[] {
    return this.batch.moves.filter((move) => !this.switched.has(move.slot));
  }

  /** Phase 1: prepare and stream (copy at a snapshot, then follow changes until caught up). */
  async stream(): Promise<void> {
    const { batch, connections, journaled } = this;
    const { migrationId } = batch;
    const streaming = this.unswitched();
    for (const move of streaming) await updateMove(connections.catalog, migrationId, move.slot, { state: 'running', error: null });
    const toPrepare = streaming.filter((move) => !this.doneBySlot.get(move.slot)?.has('prepare'));
    // Journaled per slot, done for the whole batch in one transaction on the target.
    await journaled.runForSlots(toPrepare.map((move) => move.slot), 'prepare',
      () => stageSlotLeaves(connections.target, batch.tables, toPrepare.map((move) => move.slot), batch.modulus));
    if (streaming.some((move) => !this.doneBySlot.get(move.slot)?.has('stream'))) {
      // Idempotent as a whole: a resumed batch re-copies unless its subscription already streams.
      await journaled.runForSlots(streaming.map((move) => move.slot), 'stream', () => streamBatch(batch, streaming, connections, this.options));
    }
  }

  /** Phase 2: each slot's freeze → final sync → verify → attach → switch. */
  async cutOver(): Promise<void> {
    const { batch } = this;
    if (this.unswitched().length > 0) {
      // Changes made while other batches copied: be close again before the first freeze.
      await catchUp(batch, this.connections, this.options.limits);
    }
    for (const move of this.unswitched()) {
      const cutover = await cutOverSlot(batch, move, this.connections, this.options, this.journaled);
      this.switched.add(move.slot);
      this.result.switched.push(cutover);
      this.options.emit({ type: 'move_done', migrationId: batch.migrationId, slot: move.slot, source: batch.source.name, target: batch.target.name,
        bytes: cutover.bytes, rows: cutover.rows, seconds: (Date.now() - this.startedMs) / 1000, pauseMs: cutover.pauseMs });
    }
  }

  /** Phase 3: replication objects, CHECKs and the source's old leaves. */
  async cleanUp(): Promise<OnlineBatchResult> {
    try {
      await cleanUpSwitched(this.batch, this.batch.moves.filter((move) => this.switched.has(move.slot)), this.connections, this.journaled, this.options.passwords);
    } catch (error) {
      await this.markSwitchedUnfinished(`cleanup stopped: ${errorText(error)}`);
      throw error;
    }
    return this.result;
  }

  /** Switched but not cleaned up: 'failed', so that a new rebalance waits for `resume` to finish them. */
  private async markSwitchedUnfinished(message: string): Promise<void> {
    for (const slot of this.switched) {
      await updateMove(this.connections.catalog, this.batch.migrationId, slot, { state: 'failed', error: `switched; ${message}` }).catch(() => {});
    }
  }

  /**
   * After a failure anywhere: undo every slot not yet switched (journaled, so
   * a resume starts them afresh), then clean up those that switched. Returns
   * the error to report, marked as rolled back when the undo completed.
   */
  async rollBack(error: unknown): Promise<unknown> {
    const { batch, connections } = this;
    const { migrationId } = batch;
    const message = errorText(error);
    const unswitched = this.unswitched();
    for (const move of unswitched) {
      await appendJournal(connections.catalog, { migrationId, slot: move.slot, step: WHOLE_MOVE_STEP, action: 'failed', detail: { error: message } }).catch(() => {});
    }
    try {
      await undoUnswitched(batch, unswitched, connections);
      for (const move of unswitched) await updateMove(connections.catalog, migrationId, move.slot, { state: 'rolled_back', error: message });
    } catch (undoError) {
      for (const move of unswitched) {
        await updateMove(connections.catalog, migrationId, move.slot, { state: 'failed', error: `${message}; undo stopped: ${errorText(undoError)}` }).catch(() => {});
      }
      await this.markSwitchedUnfinished(`not cleaned up: ${message}`);
      return error;
    }
    await this.cleanUp();
    return Object.assign(error instanceof Error ? error : new Error(message), { moveRolledBack: true });
  }
}

/** How often a wait on a subscription asks the servers whether it can make progress at all. */
const SUBSCRIPTION_CHECK_MS = 1_000;

/**
 * Waits until the subscription's apply worker is close to the source's WAL.
 * Meanwhile, about every second, asks the target whether the subscription can
 * get there at all (an apply worker runs, it is enabled, it counts no errors)
 * and the source whether its slot is still there and streamed from: a move the server cannot
 * carry fails within seconds with the server's reason, not at the timeout.
 */
async function catchUp(batch: OnlineBatch, connections: OnlineBatchConnections, limits: OnlineLimits): Promise<void> {
  const { source, target } = connections;
  const first = await subscriptionWorkerStatus(target, batch.name);
  const errorsAtStart = { apply: first.applyErrorCount, sync: first.syncErrorCount };
  let streamingSeenMs = performance.now();
  let checkedMs = performance.now();
  await waitFor(`catch-up of ${batch.name} to within ${limits.catchupLagBytesMax} bytes`, async () => {
    const lag = await replicationLagBytes(source, batch.name);
    if (lag !== undefined && lag <= limits.catchupLagBytesMax) return true;
    const now = performance.now();
    if (now - checkedMs >= SUBSCRIPTION_CHECK_MS) {
      checkedMs = now;
      const status = await subscriptionWorkerStatus(target, batch.name);
      const slot = await replicationSlotStatus(source, batch.name);
      if (status.workerPid !== undefined && slot.active) streamingSeenMs = now;
      const failure = subscriptionFailure({
        subscription: batch.name, targetName: batch.target.name, sourceName: batch.source.name,
        target: status, slot, errorsAtStart, notStreamingMs: now - streamingSeenMs,
      });
      if (failure) throw failure;
    }
    return undefined;
  }, { timeoutMs: limits.catchupTimeoutMs, pollMs: 10, fix: 'its apply worker runs but the source writes faster than the target applies; retry when the load is lower' });
}

async function streamBatch(
  batch: OnlineBatch,
  moves: readonly MoveRecord[],
  connections: OnlineBatchConnections,
  options: OnlineBatchOptions,
): Promise<void> {
  const { source, target } = connections;
  const leaves = moves.flatMap((move) => batch.tables.map((table) => ({ schema: table.schema, name: leafName(table.name, move.slot, batch.modulus) })));
  const password = options.passwords(batch.source.name);
  const sourceConnection = { ...batch.source.connection, ...(password !== undefined ? { password } : {}) };
  const targetPassword = options.passwords(batch.target.name);
  const targetConnection = { ...batch.target.connection, ...(targetPassword !== undefined ? { password: targetPassword } : {}) };
  const streamedByLeaf = new Map<string, number>();
  if (!(await subscriptionExists(target, batch.name))) {
    // The publication exists before the slot, so every change after the slot's snapshot is published.
    await ensurePublication(source, batch.name, leaves);
    // A slot left by an interrupted copy has lost its snapshot: start the copy again.
    await dropReplicationSlot(source, batch.name);
    const exported = await createSlotWithExportedSnapshot(sourceConnection, batch.name);
    try {
      const slotOfLeaf = new Map(moves.flatMap((move) => batch.tables.map((table) => [leafName(table.name, move.slot, batch.modulus), move] as const)));
      const reported = new Map<number, number>();
      const copying = copyLeavesAtSnapshot(sourceConnection, targetConnection, exported.snapshotName, leaves, options.limits.copyLanes, (leaf, bytes) => {
        streamedByLeaf.set(leaf.name, bytes);
        const move = slotOfLeaf.get(leaf.name)!;
        const streamed = batch.tables.reduce((sum, table) => sum + (streamedByLeaf.get(leafName(table.name, move.slot, batch.modulus)) ?? 0), 0);
        // The COPY stream is smaller than the slot on disk: progress never claims more than the slot.
        const copied = Math.min(streamed, move.bytesTotal);
        if (copied - (reported.get(move.slot) ?? 0) >= 256 * 1024 || copied === move.bytesTotal) {
          reported.set(move.slot, copied);
          options.emit({ type: 'bytes', migrationId: batch.migrationId, slot: move.slot, bytesCopied: copied, bytesTotal: move.bytesTotal });
        }
      }, options.copyGate);
      await withTimeout(`the initial copy of ${moves.length} slot(s) ${batch.source.name} → ${batch.target.name}`, copying, options.limits.syncTimeoutMs,
        'check both servers\' logs; the move was rolled back');
      // The target reaches the source at the source's peer address, which may differ from the coordinator's.
      await ensureSubscription(target, batch.name, { ...peerConnectionOf(batch.source), ...(password !== undefined ? { password } : {}) }, batch.name, exported.slotName);
    } finally {
      await exported.release();
    }
    // After the snapshot is released and the subscription streams: the wait it may take holds nothing on the source.
    for (const move of moves) {
      const streamed = batch.tables.reduce((sum, table) => sum + (streamedByLeaf.get(leafName(table.name, move.slot, batch.modulus)) ?? 0), 0);
      await settleCopyProgress(options.copyGate, streamed, move.bytesTotal, (bytesCopied) => {
        options.emit({ type: 'bytes', migrationId: batch.migrationId, slot: move.slot, bytesCopied, bytesTotal: move.bytesTotal });
      });
    }
  }
  for (const move of moves) {
    options.emit({ type: 'bytes', migrationId: batch.migrationId, slot: move.slot, bytesCopied: move.bytesTotal, bytesTotal: move.bytesTotal });
    await updateMove(connections.catalog, batch.migrationId, move.slot, { bytesCopied: move.bytesTotal });
  }
  await catchUp(batch, connections, options.limits);
}

/** One step of a chain: its name and its work (which may return facts for the journal). */
interface ChainedStep {
  step: string;
  work: () => Promise<Record<string, unknown> | void>;
}

/** Runs a step once per slot, journaled before and after; `forget` makes an undone step runnable again. */
interface Journaled {
  run(slot: number, step: string, work: ChainedStep['work']): Promise<void>;
  /**
   * Steps run one after the other as `run` would, except that a step's 'done'
   * and the next step's 'begin' are journaled in one statement.
   */
  runChain(slot: number, steps: readonly ChainedStep[]): Promise<void>;
  /** One piece of work that takes `step` for several slots at once, journaled per slot. */
  runForSlots(slots: readonly number[], step: string, work: () => Promise<void>): Promise<void>;
  forget(slot: number, steps: readonly string[]): void;
}

/** Freeze → final sync → verify → attach → switch for one slot, retried if the freeze outlasts its budget. */
async function cutOverSlot(
  batch: OnlineBatch,
  move: MoveRecord,
  connections: OnlineBatchConnections,
  options: { limits: OnlineLimits },
  journaled: Journaled,
): Promise<{ slot: number; pauseMs: number; rows: number; bytes: number }> {
  const { source, target, catalog } = connections;
  const { limits } = options;
  const fencedLsnBySlot = new Map<number, string>();
  /** The freeze's epoch, recorded with the target's 'owned' (after a resume: the catalog's current one). */
  let freezeEpoch: number | undefined;
  for (let attempt = 1; ; attempt++) {
    const frozenAt = performance.now();
    /** Time spent scanning for the verification (not waiting), left out of the freeze budget. */
    let verifyMs = 0;
    const waitedMs = (): number => performance.now() - frozenAt - verifyMs;
    const phase: Record<string, number> = {};
    const mark = (name: string): void => { phase[name] = Math.round(performance.now() - frozenAt); };
    let rows = 0;
    try {
      await journaled.runChain(move.slot, [
        { step: 'freeze', work: async () => {
          const frozen = await freezeSlotForRouters(catalog, move.slot, limits.routerAckWaitMs);
          freezeEpoch = frozen.epoch;
          const routersAckedMs = performance.now() - frozenAt;
          mark('acked');
          const fence = await fenceSlot(source, batch.tables, move.slot, batch.modulus,
            { epoch: frozen.epoch, lockTimeoutMs: limits.freezeBudgetMs, holdersWaitMs: limits.routeHoldersWaitMs });
          mark('fenced');
          fencedLsnBySlot.set(move.slot, fence.lsn);
          return {
            routersAckedMs, fencedMs: performance.now() - frozenAt, fencedLsn: fence.lsn, epoch: frozen.epoch,
            // Sequential round trips of this step (catalog + source), the unit a distant node multiplies.
            round_trips: frozen.roundTrips + fence.roundTrips,
            ...(frozen.routersBehind.length > 0 ? { routersNotAcked: frozen.routersBehind } : {}),
            ...(fence.ended.length > 0 ? { endedSessions: fence.ended } : {}),
          };
        } },
        { step: 'sync', work: async () => {
          // After a resume the fence's position is lost; the current one is later, hence safe.
          const lsn = fencedLsnBySlot.get(move.slot) ?? await currentWalLsn(source);
          const budgetLeft = Math.max(1, limits.freezeBudgetMs - waitedMs());
          await waitFor(`final sync of slot ${move.slot} to ${lsn}`, async () => ((await replayedPast(source, batch.name, lsn)) ? true : undefined),
            { timeoutMs: budgetLeft, pollMs: limits.finalSyncPollMs, fix: 'the cutover was abandoned and the slot unfrozen; it is retried' });
          mark('replayed');
          const verifyFrom = performance.now();
          const { onSource, onTarget } = await slotStatsOnBoth(source, target, batch.tables, move.slot, batch.modulus);
          verifyMs = performance.now() - verifyFrom;
          batch.tables.forEach((table, index) => {
            const sourceStats = onSource[index]!;
            const targetStats = onTarget[index]!;
            if (sourceStats.rows !== targetStats.rows || sourceStats.checksum !== targetStats.checksum) {
              throw new ReshardError('verification_failed',
                `slot ${move.slot} of ${table.name} differs after the final sync: ${batch.source.name} has ${sourceStats.rows} rows, ${batch.target.name} has ${targetStats.rows}`,
                'the move was rolled back; run `reshard rebalance` again and report this if it repeats');
            }
            rows += targetStats.rows;
          });
          mark('verified');
          // The budget bounds every wait of the freeze so far, not only the replay.
          if (waitedMs() > limits.freezeBudgetMs) {
            throw new ReshardError('timeout', `the freeze of slot ${move.slot} waited ${Math.round(waitedMs())} ms, over its ${limits.freezeBudgetMs} ms budget`,
              'the cutover was abandoned and the slot unfrozen; it is retried');
          }
          return { lsn, rows, syncedMs: performance.now() - frozenAt, verifyMs: Math.round(verifyMs) };
        } },
        { step: 'attach', work: async () => {
          // Bounded by what is left of the freeze budget; a lock timeout abandons this cutover attempt (retried).
          const epoch = freezeEpoch ?? (await getCluster(catalog)).epoch;
          await attachSlot(target, batch.tables, move.slot, batch.modulus, Math.max(1, limits.freezeBudgetMs - waitedMs()), epoch);
          mark('attached');
        } },
        { step: 'switch', work: async () => {
          // Invariant 2 at the point of no return: the target serves every table of the slot, committed
          // (a session inside an open transaction would see its own uncommitted ATTACH).
          const onTarget = await unattachedSlotLeaves(target, batch.tables, move.slot, batch.modulus);
          assert(!onTarget.inTransaction, `the target session on ${batch.target.name} is not inside a transaction before the switch of slot ${move.slot}`);
          assert(onTarget.unattached.length === 0, `slot ${move.slot} is attached on ${batch.target.name} before the switch (not: ${onTarget.unattached.map((table) => table.name).join(', ')})`);
          const switchEpoch = await switchSlotOwner(catalog, move.slot, batch.source.name, batch.target.name);
          mark('switched');
          // The source's tombstone, after the catalog's switch (the point of no return), never before: a crash
          // in between leaves the source frozen (refusing, retryable) rather than redirecting to a target that a
          // rollback could still drop. It must not fail this step (the catalog has switched: a failure here would
          // be taken for an unswitched move and undone); cleanup writes it before any leaf goes, if not here.
          const tombstone = await markSlotMoved(source, move.slot, batch.target.name, switchEpoch, limits.routeHoldersWaitMs)
            .catch((error: unknown) => ({ ended: [], roundTrips: 1, deferred: errorText(error) }));
          // Where the write pause went, ms since the freeze began, for `status` and tuning.
          return {
            pausePhasesMs: phase, epoch: switchEpoch, round_trips: 2 + tombstone.roundTrips,
            ...(tombstone.ended.length > 0 ? { endedSessions: tombstone.ended } : {}),
            ...('deferred' in tombstone ? { tombstoneDeferredToCleanup: tombstone.deferred } : {}),
          };
        } },
      ]);
      const pauseMs = performance.now() - frozenAt;
      // Not 'done' yet: the source's leaves and the replication objects go in cleanup, and a resume
      // only visits moves that are not done (a crash here left them behind for good).
      await updateMove(catalog, batch.migrationId, move.slot, { step: 'switch', pauseMs, rowsCopied: rows, bytesCopied: move.bytesTotal });
      return { slot: move.slot, pauseMs, rows, bytes: move.bytesTotal };
    } catch (error) {
      const overBudget = error instanceof ReshardError && error.code === 'timeout';
      const lockTimeout = (error as { code?: string }).code === '55P03';
      if (!(overBudget || lockTimeout) || attempt >= limits.freezeAttemptsMax) throw error;
      // Abandon this cutover: writes resume on the source, and the slot is tried again shortly. Every step
      // of the attempt is journaled as being undone before anything is undone: a crash halfway must not
      // leave a final sync recorded as done for a source that takes writes again.
      for (const step of CUTOVER_ATTEMPT_STEPS_REVERSED) {
        await appendJournal(catalog, { migrationId: batch.migrationId, slot: move.slot, step, action: 'undo', ...(step === 'freeze' ? { detail: { attempt, reason: errorText(error) } } : {}) });
      }
      // The target's slot state first: it must never say 'owned' for leaves that are not attached.
      await markSlotNotAttached(target, move.slot, batch.source.name, freezeEpoch ?? 0);
      for (const table of batch.tables) await detachSlotLeafForUndo(target, table, move.slot, batch.modulus);
      await unfenceSlot(source, batch.tables, move.slot, batch.modulus, freezeEpoch);
      await setSlotState(catalog, move.slot, 'active');
      for (const step of CUTOVER_ATTEMPT_STEPS_REVERSED) await appendJournal(catalog, { migrationId: batch.migrationId, slot: move.slot, step, action: 'undone' });
      journaled.forget(move.slot, CUTOVER_ATTEMPT_STEPS_REVERSED);
      await sleep(200 * attempt);
    }
  }
}

/** The steps an abandoned cutover attempt takes back, last taken first. */
const CUTOVER_ATTEMPT_STEPS_REVERSED = ['attach', 'sync', 'freeze'] as const;

/** Steps of an unswitched slot that its undo reverses, in the order they are taken. */
const UNDOABLE_STEPS = ['prepare', 'stream', 'freeze', 'sync', 'attach'] as const;

/**
 * Undo for every slot that did not switch: unfence, unfreeze, drop the
 * target's copy; then the subscription, the replication slot (also one a
 * failed subscription never took over) and the publication. Each undone step
 * is journaled, so a resume starts those slots from the beginning.
 */
async function undoUnswitched(batch: OnlineBatch, moves: readonly MoveRecord[], connections: OnlineBatchConnections): Promise<void> {
  const { source, target, catalog } = connections;
  for (const move of moves) {
    await appendJournal(catalog, { migrationId: batch.migrationId, slot: move.slot, step: WHOLE_MOVE_STEP, action: 'undo' });
    // The target's slot state first: it must never say 'owned' for leaves that are not attached.
    await markSlotNotAttached(target, move.slot, batch.source.name, (await getCluster(catalog)).epoch);
    for (const table of batch.tables) await detachSlotLeafForUndo(target, table, move.slot, batch.modulus);
    await unfenceSlot(source, batch.tables, move.slot, batch.modulus);
    await setSlotState(catalog, move.slot, 'active');
  }
  await dropSubscription(target, batch.name);
  await dropReplicationSlot(source, batch.name);
  await dropPublication(source, batch.name);
  for (const move of moves) {
    for (const table of batch.tables) await dropStagedSlotLeaf(target, table, move.slot, batch.modulus);
    for (const step of [...UNDOABLE_STEPS].reverse()) {
      await appendJournal(catalog, { migrationId: batch.migrationId, slot: move.slot, step, action: 'undone' });
    }
  }
}

/**
 * After the switch: drop the subscription (and its slot) and publication, the
 * CHECKs on the target, and the source's old leaves — one table's leaves per
 * connection, tables in parallel (PostgreSQL detaches one leaf of a parent at a time).
 */
async function cleanUpSwitched(batch: OnlineBatch, moves: readonly MoveRecord[], connections: OnlineBatchConnections, journaled: Journaled, passwords: PasswordLookup): Promise<void> {
  const { source, target } = connections;
  await dropSubscription(target, batch.name);
  await dropReplicationSlot(source, batch.name);
  await dropPublication(source, batch.name);
  const slots = moves.map((move) => move.slot);
  await journaled.runForSlots(slots, 'cleanup', async () => {
    // The source's tombstones before any leaf goes (the switch writes them unless the source was unreachable then).
    const epoch = (await getCluster(connections.catalog)).epoch;
    for (const slot of slots) await markSlotMoved(source, slot, batch.target.name, epoch);
    await Promise.all(batch.tables.map(async (table, index) => {
      let own: pg.Client | undefined;
      let targetSession: pg.ClientBase = target;
      try {
        // Opened inside the try: a target that cannot be reached must not leave the source session open.
        own = index === 0 ? undefined : await connectNode(batch.source, passwords, 'reshard cleanup');
        const sourceSession = own ?? source;
        if (index > 0) targetSession = await connectNode(batch.target, passwords, 'reshard cleanup');
        for (const slot of slots) {
          await dropSlotBoundConstraint(targetSession, table, slot, batch.modulus);
          await detachAndDropSlotLeaf(sourceSession, table, slot, batch.modulus);
        }
      } finally {
        await own?.end().catch(() => {});
        if (targetSession !== target) await (targetSession as pg.Client).end().catch(() => {});
      }
    }));
  });
  for (const move of moves) await updateMove(connections.catalog, batch.migrationId, move.slot, { state: 'done' });
}
