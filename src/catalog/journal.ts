import type { Queryable } from '../plumbing/queryable.js';
import type { JournalStepName, MoveStepName } from '../core/moveStepNames.js';
import { logJournalEntry } from './journalLog.js';

export type { JournalAction } from './journalAction.js';
import type { JournalAction } from './journalAction.js';

export interface JournalEntry {
  id: number;
  migrationId: number;
  slot: number | undefined;
  step: string;
  action: JournalAction;
  at: Date;
  detail: Record<string, unknown> | undefined;
}

/** Written before a step is taken ('begin') and after ('done' / 'failed'). */
export async function appendJournal(
  db: Queryable,
  entry: { migrationId: number; slot?: number; step: JournalStepName; action: JournalAction; detail?: Record<string, unknown> },
): Promise<void> {
  await db.query(
    'INSERT INTO reshard.journal (migration_id, slot, step, action, detail) VALUES ($1, $2, $3, $4, $5)',
    [entry.migrationId, entry.slot ?? null, entry.step, entry.action, entry.detail ? JSON.stringify(entry.detail) : null],
  );
  logJournalEntry(entry);
}

/** Journals a step's start for every slot of `slots` and shows it on their moves, in one statement. */
export async function beginStep(db: Queryable, entry: { migrationId: number; slots: readonly number[]; step: MoveStepName }): Promise<void> {
  if (entry.slots.length === 0) return;
  await db.query(
    `WITH moved AS (UPDATE reshard.move SET step = $3 WHERE migration_id = $1 AND slot = ANY ($2::int[]))
     INSERT INTO reshard.journal (migration_id, slot, step, action) SELECT $1, slot, $3, 'begin' FROM unnest($2::int[]) WITH ORDINALITY AS s(slot, n) ORDER BY n`,
    [entry.migrationId, entry.slots, entry.step],
  );
  for (const slot of entry.slots) logJournalEntry({ migrationId: entry.migrationId, slot, step: entry.step, action: 'begin' });
}

/** Journals a step done for every slot of `slots`, with the same detail, in one statement. */
export async function finishStep(db: Queryable, entry: { migrationId: number; slots: readonly number[]; step: MoveStepName; detail?: Record<string, unknown> }): Promise<void> {
  if (entry.slots.length === 0) return;
  await db.query(
    `INSERT INTO reshard.journal (migration_id, slot, step, action, detail) SELECT $1, slot, $3, 'done', $4 FROM unnest($2::int[]) WITH ORDINALITY AS s(slot, n) ORDER BY n`,
    [entry.migrationId, entry.slots, entry.step, entry.detail ? JSON.stringify(entry.detail) : null],
  );
  for (const slot of entry.slots) logJournalEntry({ migrationId: entry.migrationId, slot, step: entry.step, action: 'done', detail: entry.detail });
}

/**
 * Journals one step done and the next one begun for every slot of `slots`,
 * in one statement (one commit instead of two per slot: inside a freeze
 * every commit is write pause). The rows keep their order: each slot's
 * 'done' gets a lower id than its 'begin'.
 */
export async function finishAndBeginStep(
  db: Queryable,
  entry: { migrationId: number; slots: readonly number[]; done: MoveStepName; detail?: Record<string, unknown>; begin: MoveStepName },
): Promise<void> {
  if (entry.slots.length === 0) return;
  await db.query(
    `WITH moved AS (UPDATE reshard.move SET step = $5 WHERE migration_id = $1 AND slot = ANY ($2::int[]))
     INSERT INTO reshard.journal (migration_id, slot, step, action, detail)
     SELECT $1, s.slot, e.step, e.action, e.detail
       FROM unnest($2::int[]) WITH ORDINALITY AS s(slot, n)
      CROSS JOIN (VALUES (1, $3::text, 'done'::text, $4::jsonb), (2, $5::text, 'begin'::text, NULL::jsonb)) AS e(ord, step, action, detail)
      ORDER BY e.ord, s.n`,
    [entry.migrationId, entry.slots, entry.done, entry.detail ? JSON.stringify(entry.detail) : null, entry.begin],
  );
  logChainedEntries(entry.migrationId, entry.slots, entry.begin, { step: entry.done, ...(entry.detail ? { detail: entry.detail } : {}) });
}

/** Logs a chained write as the journal holds it: every slot's 'done' (when there is one), then every slot's 'begin'. */
function logChainedEntries(migrationId: number, slots: readonly number[], begin: MoveStepName, done?: { step: MoveStepName; detail?: Record<string, unknown> }): void {
  if (done) for (const slot of slots) logJournalEntry({ migrationId, slot, step: done.step, action: 'done', detail: done.detail });
  for (const slot of slots) logJournalEntry({ migrationId, slot, step: begin, action: 'begin' });
}

/**
 * A step's 'begin' (after the step before's 'done', when chained) written by
 * the step's own catalog statement, in its transaction: on record exactly
 * when that statement's change is. The statement puts `ctes(n)` first in its
 * WITH list and passes `parameter` as its `$n`, then calls `committed()`.
 * One commit and one round trip instead of two, inside a freeze.
 */
export interface JournalInStatement {
  ctes(parameterNumber: number): string;
  readonly parameter: string;
  committed(): void;
}

/**
 * `finishAndBeginStep` (or `beginStep` without `done`) as CTEs of another
 * catalog statement; `onCommitted` runs once that statement has committed.
 */
export function journalInStatement(entry: {
  migrationId: number; slots: readonly number[]; begin: MoveStepName; done?: { step: MoveStepName; detail?: Record<string, unknown> };
}, onCommitted: () => void): JournalInStatement {
  return {
    parameter: JSON.stringify({
      migrationId: entry.migrationId, slots: entry.slots, begin: entry.begin,
      ...(entry.done ? { done: entry.done.step, ...(entry.done.detail ? { detail: entry.done.detail } : {}) } : {}),
    }),
    // The rows keep finishAndBeginStep's order: every slot's 'done', then every slot's 'begin'.
    ctes: (n) => `journal_entry AS (SELECT $${n}::jsonb AS e),
          journaled AS (INSERT INTO reshard.journal (migration_id, slot, step, action, detail)
                        SELECT (j.e->>'migrationId')::bigint, s.slot::int, x.step, x.action, x.detail
                          FROM journal_entry j
                         CROSS JOIN LATERAL jsonb_array_elements_text(j.e->'slots') WITH ORDINALITY AS s(slot, n)
                         CROSS JOIN LATERAL (VALUES (1, j.e->>'done', 'done', j.e->'detail'), (2, j.e->>'begin', 'begin', NULL::jsonb)) AS x(ord, step, action, detail)
                         WHERE x.step IS NOT NULL
                         ORDER BY x.ord, s.n
                        RETURNING 1),
          journal_moved AS (UPDATE reshard.move m SET step = j.e->>'begin' FROM journal_entry j
                             WHERE m.migration_id = (j.e->>'migrationId')::bigint
                               AND m.slot IN (SELECT t.slot::int FROM jsonb_array_elements_text(j.e->'slots') AS t(slot)) RETURNING 1)`,
    committed() {
      logChainedEntries(entry.migrationId, entry.slots, entry.begin, entry.done);
      onCommitted();
    },
  };
}

/** The journal's columns as every reader selects them, and the entry they make. */
export const JOURNAL_COLUMNS = 'id::text, migration_id::text, slot, step, action, at, detail';

export interface JournalRow { id: string; migration_id: string; slot: number | null; step: string; action: JournalAction; at: Date; detail: Record<string, unknown> | null }

export function journalEntryFromRow(row: JournalRow): JournalEntry {
  return {
    id: Number(row.id),
    migrationId: Number(row.migration_id),
    slot: row.slot ?? undefined,
    step: row.step,
    action: row.action,
    at: row.at,
    detail: row.detail ?? undefined,
  };
}

export async function readJournal(db: Queryable, migrationId: number, slot?: number): Promise<JournalEntry[]> {
  const result = await db.query<JournalRow>(
    `SELECT ${JOURNAL_COLUMNS} FROM reshard.journal
      WHERE migration_id = $1 AND ($2::int IS NULL OR slot = $2) ORDER BY reshard.journal.id`,
    [migrationId, slot ?? null],
  );
  return result.rows.map(journalEntryFromRow);
}

/**
 * The pseudo-step whose 'undo' took back a whole unswitched online move at
 * once, in journals written before every kind of move undid step by step.
 * Still read, never written.
 */
export const WHOLE_MOVE_STEP = 'online';

/**
 * The steps of one move that finished ('done' after their last 'begin') and
 * whose undo has not begun: once an undo starts, the step's effects may be
 * half gone, so a resume must take it again (steps are idempotent), never
 * skip it — skipping a half-undone freeze or final sync would switch a slot
 * whose source takes writes again.
 */
export function completedSteps(entries: readonly JournalEntry[]): Set<string> {
  const done = new Set<string>();
  for (const entry of entries) {
    if (entry.action === 'done') done.add(entry.step);
    if (entry.action === 'begin' || entry.action === 'undo' || entry.action === 'undone') done.delete(entry.step);
    if (entry.action === 'undo' && entry.step === WHOLE_MOVE_STEP) done.clear();
  }
  return done;
}
