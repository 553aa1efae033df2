import type pg from 'pg';
import type { JournalInStatement } from '../catalog/journal.js';
import type { MoveStepName } from '../core/moveStepNames.js';
import { leafName } from '../node/leafName.js';
import type { SlotTable } from '../node/slotPartitions.js';

/** What every kind of move works on: the slots' tables between two nodes, with sessions on both and on the catalog. */
export interface SlotMoveBase {
  migrationId: number;
  modulus: number;
  tables: readonly SlotTable[];
  sourceName: string;
  targetName: string;
  /** Sessions owned by whoever runs the steps; steps never close them. */
  source: pg.ClientBase;
  target: pg.ClientBase;
  catalog: pg.ClientBase;
}

/** What a step's `do` returns: facts for its 'done' in the journal, or nothing. */
export type StepFacts = Record<string, unknown> | void;

/**
 * One named, idempotent step of a move. `do` takes it for `slots` (the slots
 * of the run it is not done for yet: one for a slot's move, several for a
 * batch); `undo` restores the state before `do` and is idempotent too. A step
 * at the point of no return has no undo: after it, a move is only resumed
 * forward, and rollback is a move back.
 */
export interface MoveStep<Context> extends DescribedStep {
  /** `journal`: for a step that `journalsBeginInStatement`, its begin to write in its catalog statement (undefined: on record already). */
  do(context: Context, slots: readonly number[], journal?: JournalInStatement): Promise<StepFacts>;
  undo?(context: Context, slots: readonly number[]): Promise<void>;
  pointOfNoReturn?: boolean;
  /**
   * The step writes nothing anywhere (it waits and reads): its begin is
   * journaled while it runs rather than before, one round trip less inside a
   * freeze. A resume takes it again either way.
   */
  readOnly?: boolean;
  /**
   * The step's work starts with one catalog statement, which writes the
   * step's begin too (see JournalInStatement): one round trip and one commit
   * less inside a freeze. `do` must run that statement before anything else
   * the step changes.
   */
  journalsBeginInStatement?: boolean;
}

/** A step as --dry-run shows it: its name and what it does, no I/O. */
export interface DescribedStep {
  name: MoveStepName;
  describe(plan: MovePlanView): string;
}

/** The parts of a move that `describe` may show. */
export interface MovePlanView {
  slot: number;
  modulus: number;
  sourceName: string;
  targetName: string;
  tables: readonly SlotTable[];
}

/** "users_s0017, orders_s0017": the leaves a move of this slot touches, for descriptions. */
export function describeLeaves(view: MovePlanView): string {
  return view.tables.map((table) => leafName(table.name, view.slot, view.modulus)).join(', ');
}
