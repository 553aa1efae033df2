import type pg from 'pg';
import { appendJournal, beginStep, completedSteps, finishAndBeginStep, finishStep, journalInStatement, readJournal, type JournalInStatement } from '../catalog/journal.js';
import { updateMove, updateMoves, type MoveChange } from '../catalog/migrationRuns.js';
import { isMoveStepName, type MoveStepName } from '../core/moveStepNames.js';

type Detail = Record<string, unknown> | undefined;

/** What the step runner writes about a migration's moves; the catalog's journal, or a recording one in unit tests. */
export interface StepJournal {
  readonly migrationId: number;
  /** The steps of the slot's move the journal shows done (see `completedSteps`). */
  completed(slot: number): Promise<Set<MoveStepName>>;
  /** The step begun for every slot of `slots`, in one statement (a cutover of several slots is one write). */
  begin(slots: readonly number[], step: MoveStepName): Promise<void>;
  /** One step done and the next begun for every slot of `slots`, in one statement (one commit: inside a freeze every commit is write pause). */
  finishAndBegin(slots: readonly number[], done: MoveStepName, detail: Detail, begin: MoveStepName): Promise<void>;
  /**
   * `begin` (or `finishAndBegin` when `done` is given) written by the step's own catalog statement, in its
   * transaction (see JournalInStatement); `onCommitted` once it is. Absent: the runner journals the begin
   * first, as for any step.
   */
  inStatement?(slots: readonly number[], begin: MoveStepName, done: { step: MoveStepName; detail: Detail } | undefined, onCommitted: () => void): JournalInStatement;
  /** The step done for every slot of `slots`, in one statement. */
  done(slots: readonly number[], step: MoveStepName, detail: Detail): Promise<void>;
  failed(slot: number, step: MoveStepName, detail: Detail): Promise<void>;
  /** Written before the step's undo is taken. */
  undo(slot: number, step: MoveStepName, detail: Detail): Promise<void>;
  undone(slot: number, step: MoveStepName): Promise<void>;
  /** The move's record: its state and error. */
  moveState(slot: number, change: MoveChange): Promise<void>;
  /** The same change to several moves' records, in one commit. */
  movesState(slots: readonly number[], change: MoveChange): Promise<void>;
}

/** The step journal in the catalog (reshard.journal and reshard.move). */
export function catalogStepJournal(catalog: pg.ClientBase, migrationId: number): StepJournal {
  const append = (slot: number, step: MoveStepName, action: 'failed' | 'undo' | 'undone', detail: Detail): Promise<void> =>
    appendJournal(catalog, { migrationId, slot, step, action, ...(detail ? { detail } : {}) });
  return {
    migrationId,
    async completed(slot) {
      // Entries of steps no kind of move has any more (a whole-move undo) count in `completedSteps`, never as a step.
      return new Set([...completedSteps(await readJournal(catalog, migrationId, slot))].filter(isMoveStepName));
    },
    begin: (slots, step) => beginStep(catalog, { migrationId, slots, step }),
    finishAndBegin: (slots, done, detail, begin) => finishAndBeginStep(catalog, { migrationId, slots, done, ...(detail ? { detail } : {}), begin }),
    inStatement: (slots, begin, done, onCommitted) => journalInStatement({ migrationId, slots, begin, ...(done ? { done: { step: done.step, ...(done.detail ? { detail: done.detail } : {}) } } : {}) }, onCommitted),
    done: (slots, step, detail) => finishStep(catalog, { migrationId, slots, step, ...(detail ? { detail } : {}) }),
    failed: (slot, step, detail) => append(slot, step, 'failed', detail),
    undo: (slot, step, detail) => append(slot, step, 'undo', detail),
    undone: (slot, step) => append(slot, step, 'undone', undefined),
    moveState: (slot, change) => updateMove(catalog, migrationId, slot, change),
    movesState: (slots, change) => updateMoves(catalog, migrationId, slots, change),
  };
}
