import type { MoveRecord } from '../catalog/migrationRuns.js';
import { errorText, ReshardError } from '../core/errors.js';
import type { OnlineBatch, OnlineBatchConnections, OnlineBatchOptions, OnlineBatchResult } from './onlineBatchShape.js';
import {
  newCutoverAttempt, ONLINE_ATTACH_STEPS, ONLINE_BATCH_STEPS, ONLINE_CLEANUP_STEPS, ONLINE_CUTOVER_STEPS, ONLINE_UNDOABLE_STEPS, type CutoverState, type OnlineBatchContext,
} from './onlineSteps.js';
import { RoundTripMeter } from './roundTripMeter.js';
import { catalogStepJournal, type StepJournal } from './stepJournal.js';
import { StepRunner } from './stepRunner.js';
import { catchUp } from './streamBatch.js';

/**
 * The online mover for one batch, in three phases the coordinator can
 * interleave across batches: `stream` (prepare every slot's leaves on the
 * target; one publication + replication slot copies at a snapshot and
 * streams them all), `cutOver` (group by group of slots the attach on the
 * target, then a short freeze, final sync, verification and switch of the
 * group's slots together) and `cleanUp`. Running every batch's
 * stream before any cutover keeps the cutovers — the write pauses — away from
 * the CPU the copies use. Each phase is a list of steps (`onlineSteps.ts`)
 * run by the step runner; `rollBack` undoes every slot not yet switched and
 * cleans up those that were.
 */
export class OnlineBatchRun {
  private readonly switched = new Set<number>();
  private readonly result: OnlineBatchResult = { switched: [] };
  private readonly startedMs = Date.now();
  private readonly context: OnlineBatchContext;

  private constructor(
    readonly batch: OnlineBatch,
    connections: OnlineBatchConnections,
    options: OnlineBatchOptions,
    private readonly journal: StepJournal,
    private readonly runner: StepRunner,
    roundTrips: RoundTripMeter,
  ) {
    this.context = {
      migrationId: batch.migrationId, modulus: batch.modulus, tables: batch.tables, sourceName: batch.source.name, targetName: batch.target.name,
      ...connections, batch, options, streaming: () => this.unswitched(), cutovers: new Map(), roundTrips, rowSumsRunning: new Map(),
    };
    for (const move of batch.moves) {
      if (!runner.isDone(move.slot, 'switch')) continue;
      // Switched before a resume: counted as moved once its cleanup is done.
      this.switched.add(move.slot);
      this.result.switched.push({ slot: move.slot, pauseMs: move.pauseMs ?? 0, rows: move.rowsCopied, bytes: move.bytesTotal });
    }
  }

  static async open(batch: OnlineBatch, sessions: OnlineBatchConnections, options: OnlineBatchOptions): Promise<OnlineBatchRun> {
    // Every query of the batch's sessions (the steps' and the journal's) is metered: a freeze journals its round trips.
    const roundTrips = new RoundTripMeter();
    const connections = { source: roundTrips.meter(sessions.source), target: roundTrips.meter(sessions.target), catalog: roundTrips.meter(sessions.catalog) };
    const journal = catalogStepJournal(connections.catalog, batch.migrationId);
    const runner = await StepRunner.open(journal, batch.moves.map((move) => move.slot), options.emit);
    return new OnlineBatchRun(batch, connections, options, journal, runner, roundTrips);
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

  /** Phase 1: prepare and stream (copy at a snapshot, then follow changes until caught up), for every unswitched slot at once. */
  async stream(): Promise<void> {
    const streaming = this.unswitched().map((move) => move.slot);
    await this.journal.movesState(streaming, { state: 'running', error: null });
    await this.runner.run(ONLINE_BATCH_STEPS, this.context, streaming);
  }

  /**
   * Phase 2: the unswitched slots in groups of up to `cutoverSlotsMax`, each group's attach on the target,
   * then freeze → final sync → verify → switch for the group's slots together, an attempt that outlasts the
   * freeze budget undone and retried.
   */
  async cutOver(): Promise<void> {
    const { batch, context } = this;
    const { limits } = context.options;
    if (this.unswitched().length > 0) {
      // Changes made while other batches copied: be close again before the first freeze.
      await catchUp(batch, context, limits);
    }
    const moves = this.unswitched();
    for (let first = 0; first < moves.length; first += limits.cutoverSlotsMax) {
      const group = moves.slice(first, first + limits.cutoverSlotsMax);
      const slots = group.map((move) => move.slot);
      // A cutover's checksum scans load both nodes like a copy does: it waits while the latency guard pauses copies.
      await context.options.copyGate?.admit(0, 'unstreamed');
      const cutover: CutoverState = { frozenAt: performance.now(), roundTripsAtFreeze: context.roundTrips.count, verifyMs: 0, phase: {}, phaseRoundTrips: {}, rowsBySlot: new Map() };
      for (const slot of slots) context.cutovers.set(slot, cutover);
      const retry = {
        attemptsMax: limits.freezeAttemptsMax,
        retryable: (error: unknown): boolean => (error instanceof ReshardError && error.code === 'timeout') || (error as { code?: string }).code === '55P03',
        pauseMs: (attempt: number) => 200 * attempt,
      };
      // The attach waits for the target's parents' lock (work in flight on its other slots, or a session a
      // broken link left open): a lock timeout is retried as a freeze's is.
      await this.runner.run(ONLINE_ATTACH_STEPS, context, slots, { retry });
      await this.runner.run(ONLINE_CUTOVER_STEPS, context, slots, { retry: { ...retry, beforeAttempt: () => newCutoverAttempt(cutover, context.roundTrips) } });
      const pauseMs = performance.now() - cutover.frozenAt;
      for (const move of group) {
        const rows = cutover.rowsBySlot.get(move.slot) ?? 0;
        // Not 'done' yet: the source's leaves and the replication objects go in cleanup, and a resume
        // only visits moves that are not done (a crash here left them behind for good).
        await this.journal.moveState(move.slot, { step: 'switch', pauseMs, rowsCopied: rows, bytesCopied: move.bytesTotal });
        this.switched.add(move.slot);
        this.result.switched.push({ slot: move.slot, pauseMs, rows, bytes: move.bytesTotal });
        context.options.emit({ type: 'move_done', migrationId: batch.migrationId, slot: move.slot, source: batch.source.name, target: batch.target.name,
          bytes: move.bytesTotal, rows, seconds: (Date.now() - this.startedMs) / 1000, pauseMs });
      }
    }
  }

  /** Phase 3: replication objects, CHECKs and the source's old leaves. */
  async cleanUp(): Promise<OnlineBatchResult> {
    const slots = [...this.switched];
    try {
      await this.runner.run(ONLINE_CLEANUP_STEPS, this.context, slots);
      await this.journal.movesState(slots, { state: 'done' });
    } catch (error) {
      await this.markSwitchedUnfinished(`cleanup stopped: ${errorText(error)}`);
      throw error;
    }
    return this.result;
  }

  /** Switched but not cleaned up: 'failed', so that a new rebalance waits for `resume` to finish them. */
  private async markSwitchedUnfinished(message: string): Promise<void> {
    for (const slot of this.switched) {
      await this.journal.moveState(slot, { state: 'failed', error: `switched; ${message}` }).catch(() => {});
    }
  }

  /**
   * After a failure anywhere: undo every slot not yet switched (journaled, so
   * a resume starts them afresh), then clean up those that switched. Returns
   * the error to report: `MoveRolledBack` when the undo completed.
   */
  async rollBack(error: unknown): Promise<unknown> {
    const reported = await this.runner.rollBack(ONLINE_UNDOABLE_STEPS, this.context, this.unswitched().map((move) => move.slot), error);
    if (reported === error) {
      await this.markSwitchedUnfinished(`not cleaned up: ${errorText(error)}`);
      return error;
    }
    await this.cleanUp();
    return reported;
  }
}

export { ONLINE_LIMITS_DEFAULT, type OnlineBatch, type OnlineBatchConnections, type OnlineBatchOptions, type OnlineBatchResult, type OnlineLimits } from './onlineBatchShape.js';
