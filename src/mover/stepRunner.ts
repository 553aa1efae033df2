import { assert } from '../core/assert.js';
import { errorText } from '../core/errors.js';
import type { MoveStepName } from '../core/moveStepNames.js';
import type { MoveStep, StepFacts } from './moveStep.js';
import { MoveRolledBack } from './moveRolledBack.js';
import type { StepJournal } from './stepJournal.js';

/** A step's journal entry as an event, for the coordinator's output. */
export interface StepEvent {
  type: 'step';
  migrationId: number;
  slot: number;
  step: MoveStepName;
  action: 'begin' | 'done' | 'undo' | 'undone' | 'failed';
}

/** How often a failed attempt of a step list is undone and taken again, and which failures allow it. */
export interface RetryBound {
  attemptsMax: number;
  retryable(error: unknown): boolean;
  /** Wait before the next attempt. */
  pauseMs(attempt: number): number;
  /** Called before each attempt (fresh per-attempt state: timers, budgets). */
  beforeAttempt?(attempt: number): void;
}

export interface RunOptions {
  retry?: RetryBound;
  /** On a failure before the point of no return: undo the steps taken, in reverse, and throw `MoveRolledBack`. */
  rollBackOnFailure?: boolean;
  /** Facts journaled with a step's 'done' when the step returns none. */
  facts?: () => Record<string, unknown>;
}

/**
 * The one runner of every kind of move. It keeps, per slot, which steps are
 * done (from the journal at the start, then as it goes) and runs any list of
 * steps for a set of slots: each step journaled before it is taken (or by its
 * own first catalog statement, see JournalInStatement) and after (the 'done'
 * of one and the 'begin' of the next in one statement), steps the journal
 * shows done skipped (resume), a failed attempt undone and taken again
 * within a bound, and a failure before the point of no return undone in
 * reverse — every undo journaled before it is taken.
 */
export class StepRunner {
  /** The step each slot is at, for its 'failed' entry. */
  private readonly atStep = new Map<number, MoveStepName>();

  private constructor(
    private readonly journal: StepJournal,
    private readonly doneBySlot: Map<number, Set<MoveStepName>>,
    private readonly emit: (event: StepEvent) => void,
  ) {}

  static async open(journal: StepJournal, slots: readonly number[], emit: (event: StepEvent) => void): Promise<StepRunner> {
    const doneBySlot = new Map<number, Set<MoveStepName>>();
    for (const slot of slots) doneBySlot.set(slot, await journal.completed(slot));
    return new StepRunner(journal, doneBySlot, emit);
  }

  isDone(slot: number, step: MoveStepName): boolean {
    return this.doneBySlot.get(slot)?.has(step) ?? false;
  }

  /** Runs `steps` for `slots` (each step for the slots it is not done for), retried and rolled back as `options` say. */
  async run<Context>(steps: readonly MoveStep<Context>[], context: Context, slots: readonly number[], options: RunOptions = {}): Promise<void> {
    const { retry } = options;
    for (let attempt = 1; ; attempt++) {
      retry?.beforeAttempt?.(attempt);
      const taken: MoveStep<Context>[] = [];
      try {
        await this.forward(steps, context, slots, taken, options.facts);
        return;
      } catch (error) {
        const passedNoReturn = taken.some((step) => step.pointOfNoReturn);
        if (retry && !passedNoReturn && attempt < retry.attemptsMax && retry.retryable(error)) {
          // Abandon this attempt: every step of it is undone (journaled first), then it is taken again.
          await this.undo(taken, context, slots, { attempt, reason: errorText(error) });
          await new Promise((resolve) => setTimeout(resolve, retry.pauseMs(attempt)));
          continue;
        }
        if (!options.rollBackOnFailure) throw error;
        if (passedNoReturn) {
          await this.failed(slots, error);
          await this.journal.movesState(slots, { state: 'failed', error: errorText(error) }).catch(() => {});
          throw error;
        }
        // The failed step may have done part of its work: it is undone too.
        throw await this.rollBack(taken, context, slots, error);
      }
    }
  }

  /**
   * The one undo path of every kind of move: the failure journaled, `steps`
   * undone in reverse for `slots`, the moves marked rolled back. Returns the
   * error to report: `MoveRolledBack` when the undo completed, else `error`
   * itself (the moves stay failed, the journal keeps what is left to undo).
   */
  async rollBack<Context>(steps: readonly MoveStep<Context>[], context: Context, slots: readonly number[], error: unknown): Promise<unknown> {
    const message = errorText(error);
    await this.failed(slots, error);
    try {
      await this.undo(steps, context, slots);
    } catch (undoError) {
      for (const slot of slots) {
        await this.journal.moveState(slot, { state: 'failed', error: `${message}; undo stopped: ${errorText(undoError)}` }).catch(() => {});
      }
      return error;
    }
    for (const slot of slots) await this.journal.moveState(slot, { state: 'rolled_back', error: message });
    return new MoveRolledBack(error);
  }

  /**
   * Undoes `steps` in reverse for `slots`. Each step's undo is journaled
   * before it is taken — also a step with nothing to undo, so that a resume
   * never skips a final sync or a verification whose source was written again.
   */
  async undo<Context>(steps: readonly MoveStep<Context>[], context: Context, slots: readonly number[], detail?: Record<string, unknown>): Promise<void> {
    for (const step of [...steps].reverse()) {
      assert(!step.pointOfNoReturn, `step ${step.name} is past the point of no return and cannot be undone`);
      for (const slot of slots) {
        await this.journal.undo(slot, step.name, detail);
        this.doneBySlot.get(slot)?.delete(step.name);
        this.emit({ type: 'step', migrationId: this.journal.migrationId, slot, step: step.name, action: 'undo' });
      }
      await step.undo?.(context, slots);
      for (const slot of slots) {
        await this.journal.undone(slot, step.name);
        this.emit({ type: 'step', migrationId: this.journal.migrationId, slot, step: step.name, action: 'undone' });
      }
    }
  }

  private async failed(slots: readonly number[], error: unknown): Promise<void> {
    for (const slot of slots) {
      const step = this.atStep.get(slot);
      if (step === undefined) continue;
      await this.journal.failed(slot, step, { error: errorText(error) }).catch(() => {});
      this.emit({ type: 'step', migrationId: this.journal.migrationId, slot, step, action: 'failed' });
    }
  }

  private emitBegin(slots: readonly number[], step: MoveStepName): void {
    for (const slot of slots) this.emit({ type: 'step', migrationId: this.journal.migrationId, slot, step, action: 'begin' });
  }

  /** Takes the steps in order; `taken` collects every step passed or begun (the failed one included). */
  private async forward<Context>(
    steps: readonly MoveStep<Context>[], context: Context, slots: readonly number[], taken: MoveStep<Context>[], facts?: () => Record<string, unknown>,
  ): Promise<void> {
    const { journal } = this;
    /** The step whose work is done but whose 'done' is not journaled yet. */
    let unrecorded: { slots: readonly number[]; step: MoveStepName; detail: Record<string, unknown> | undefined } | undefined;
    const recorded = (): void => {
      for (const slot of unrecorded!.slots) {
        this.doneBySlot.get(slot)?.add(unrecorded!.step);
        this.emit({ type: 'step', migrationId: journal.migrationId, slot, step: unrecorded!.step, action: 'done' });
      }
      unrecorded = undefined;
    };
    const flush = async (): Promise<void> => {
      if (!unrecorded) return;
      await journal.done(unrecorded.slots, unrecorded.step, unrecorded.detail);
      recorded();
    };
    for (const step of steps) {
      taken.push(step);
      const pending = slots.filter((slot) => !this.isDone(slot, step.name));
      if (pending.length === 0) continue;
      // The same slots as the step before: its 'done' and this 'begin' in one statement.
      const chained = unrecorded !== undefined && sameSlots(unrecorded.slots, pending);
      const begin = async (): Promise<void> => {
        if (chained) {
          await journal.finishAndBegin(pending, unrecorded!.step, unrecorded!.detail, step.name);
          recorded();
        } else {
          await flush();
          await journal.begin(pending, step.name);
        }
      };
      let returned: StepFacts;
      // The step's first catalog statement writes its begin (and the chained done): on record exactly when its change is,
      // and announced then (not when the whole step returns).
      let committedInStatement = false;
      const inStatement = step.journalsBeginInStatement && journal.inStatement
        ? journal.inStatement(pending, step.name, chained ? { step: unrecorded!.step, detail: unrecorded!.detail } : undefined, () => {
          committedInStatement = true;
          if (chained) recorded();
          this.emitBegin(pending, step.name);
        })
        : undefined;
      if (inStatement) {
        if (!chained) await flush();
        for (const slot of pending) this.atStep.set(slot, step.name);
        returned = await step.do(context, pending, inStatement);
        assert(committedInStatement, `step ${step.name} wrote its begin in its catalog statement`);
      } else if (step.readOnly) {
        // Nothing to undo if the coordinator dies before its begin is on record: both at once.
        for (const slot of pending) this.atStep.set(slot, step.name);
        const [begun, done] = await Promise.allSettled([begin(), step.do(context, pending)]);
        if (begun.status === 'rejected') throw begun.reason;
        this.emitBegin(pending, step.name);
        if (done.status === 'rejected') throw done.reason;
        returned = done.value;
      } else {
        await begin();
        for (const slot of pending) this.atStep.set(slot, step.name);
        this.emitBegin(pending, step.name);
        returned = await step.do(context, pending);
      }
      unrecorded = { slots: pending, step: step.name, detail: returned ?? facts?.() };
    }
    await flush();
  }
}

function sameSlots(some: readonly number[], others: readonly number[]): boolean {
  return some.length === others.length && some.every((slot, index) => slot === others[index]);
}
