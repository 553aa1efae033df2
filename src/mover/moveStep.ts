import type pg from 'pg';
import { leafName } from '../node/leafName.js';
import type { SlotTable } from '../node/slotPartitions.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { CopyGate } from '../node/copyMeter.js';

/** Everything one move's steps need: the slot, its tables, and open connections. */
export interface MoveContext {
  migrationId: number;
  slot: number;
  modulus: number;
  sourceName: string;
  targetName: string;
  bytesTotal: number;
  tables: readonly SlotTable[];
  /** Connections owned by the move's runner; steps never close them. */
  source: pg.ClientBase;
  target: pg.ClientBase;
  catalog: pg.ClientBase;
  emit: MigrationEventSink;
  /** Paces the copy (rate cap, holds); unpaced when absent. */
  copyGate?: CopyGate;
  /** Facts steps pass forward (copied bytes, rows), recorded in the journal. */
  facts: Record<string, number>;
}

/**
 * One named, idempotent step of a move. `undo` restores the state before `do`
 * and is also idempotent. Steps after the point of no return have no undo:
 * rollback after the switch is a move back.
 */
export interface MoveStep {
  name: string;
  /** What the step does, for --dry-run and the journal; no I/O. */
  describe(plan: MovePlanView): string;
  do(context: MoveContext): Promise<void>;
  undo?(context: MoveContext): Promise<void>;
  pointOfNoReturn?: boolean;
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
