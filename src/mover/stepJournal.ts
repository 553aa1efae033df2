import type pg from 'pg';
import { appendJournal, beginStep, completedSteps, finishAndBeginStep, readJournal } from '../catalog/journal.js';
import { updateMove } from '../catalog/migrationRuns.js';
import { isMoveStepName, type MoveStepName } from '../core/moveStepNames.js';

type Detail = Record<string, unknown> | undefined;

/** What the step runner writes about a migration's moves; the catalog's journal, or a recording one in unit tests. */
export interface StepJournal {
  readonly migrationId: number;
  /** The steps of the slot's move the journal shows done (see `completedSteps`). */
  completed(slot: number): Promise<Set<MoveStepName>>;
  begin(slot: number, step: MoveStepName): Promise<void>;
  /** One step done and the next begun, in one statement (one commit: inside a freeze every commit is write pause). */
  finishAndBegin(slot: number, done: MoveStepName, detail: Detail, begin: MoveStepName): Promise<void>;
  done(slot: number, step: MoveStepName, detail: Detail): Promise<void>;
  failed(slot: number, step: MoveStepName, detail: Detail): Promise<void>;
  /** Written before the step's undo is taken. */
  undo(slot: number, step: MoveStepName, detail: Detail): Promise<void>;
  undone(slot: number, step: MoveStepName): Promise<void>;
  /** The move's record: its state and error. */
  moveState(slot: number, change: Parameters<typeof updateMove>[3]): Promise<void>;
}

/** The step journal in the catalog (reshard.journal and reshard.move). */
export function catalogStepJournal(catalog: pg.ClientBase, migrationId: number): StepJournal {
  const append = (slot: number, step: MoveStepName, action: 'done' | 'failed' | 'undo' | 'undone', detail: Detail): Promise<void> =>
    appendJournal(catalog, { migrationId, slot, step, action, ...(detail ? { detail } : {}) });
  return {
    migrationId,
    async completed(slot) {
      // Entries of steps no kind of move has any more (a whole-move undo) count in `completedSteps`, never as a step.
      return new Set([...completedSteps(await readJournal(catalog, migrationId, slot))].filter(isMoveStepName));
    },
    begin: (slot, step) => beginStep(catalog, { migrationId, slot, step }),
    finishAndBegin: (slot, done, detail, begin) => finishAndBeginStep(catalog, { migrationId, slot, done, ...(detail ? { detail } : {}), begin }),
    done: (slot, step, detail) => append(slot, step, 'done', detail),
    failed: (slot, step, detail) => append(slot, step, 'failed', detail),
    undo: (slot, step, detail) => append(slot, step, 'undo', detail),
    undone: (slot, step) => append(slot, step, 'undone', undefined),
    moveState: (slot, change) => updateMove(catalog, migrationId, slot, change),
  };
}
