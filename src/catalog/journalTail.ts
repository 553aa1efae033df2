import type { Queryable } from '../plumbing/queryable.js';
import { JOURNAL_COLUMNS, journalEntryFromRow, type JournalEntry, type JournalRow } from './journal.js';

// Every ORDER BY here names the table's column (`j.id`), a bigint: the selected `id::text` has the
// same name, and ordering by it sorted '999' after '1000' — the event log froze at id 999.

/**
 * The newest journal entries of every migration, newest first: the event log
 * of whoever runs them. The migration-level entries (no slot: pause, resume,
 * cancel, a migration's failure) are kept among them even when hundreds of
 * step entries came after: one slot's steps would otherwise push an operator's
 * pause out of sight within seconds.
 */
export async function readJournalTail(db: Queryable, limit: number): Promise<JournalEntry[]> {
  const steps = await db.query<JournalRow>(`SELECT ${JOURNAL_COLUMNS} FROM reshard.journal j ORDER BY j.id DESC LIMIT $1`, [limit]);
  const migrationLevel = await db.query<JournalRow>(
    `SELECT ${JOURNAL_COLUMNS} FROM reshard.journal j WHERE j.slot IS NULL ORDER BY j.id DESC LIMIT $1`,
    [MIGRATION_LEVEL_ENTRIES_MAX],
  );
  const byId = new Map<number, JournalEntry>();
  for (const row of [...steps.rows, ...migrationLevel.rows]) {
    const entry = journalEntryFromRow(row);
    byId.set(entry.id, entry);
  }
  return [...byId.values()].sort((a, b) => b.id - a.id);
}

/** Migration-level entries the event log keeps besides its tail of steps. */
const MIGRATION_LEVEL_ENTRIES_MAX = 50;

/**
 * Failed steps journaled after `afterId` (oldest first, at most `limit`),
 * for an error counter that counts each failure once however many entries
 * came between two reads.
 */
export async function failedStepsAfter(db: Queryable, afterId: number, limit: number): Promise<JournalEntry[]> {
  const result = await db.query<JournalRow>(
    `SELECT ${JOURNAL_COLUMNS} FROM reshard.journal j WHERE j.id > $1 AND j.action = 'failed' ORDER BY j.id LIMIT $2`,
    [afterId, limit],
  );
  return result.rows.map(journalEntryFromRow);
}

/** The id of the newest journal entry (0 for an empty journal). */
export async function newestJournalId(db: Queryable): Promise<number> {
  const result = await db.query<{ id: string | null }>('SELECT max(j.id)::text AS id FROM reshard.journal j');
  return Number(result.rows[0]?.id ?? 0);
}

/**
 * The newest pause or cancel entry of a migration (slot-less 'pause' /
 * 'cancel' steps): whether its coordinator is holding now, and since when.
 */
export async function latestControlEntry(db: Queryable, migrationId: number): Promise<JournalEntry | undefined> {
  const result = await db.query<JournalRow>(
    `SELECT ${JOURNAL_COLUMNS} FROM reshard.journal j
      WHERE j.migration_id = $1 AND j.slot IS NULL AND j.step IN ('pause', 'cancel')
      ORDER BY j.id DESC LIMIT 1`,
    [migrationId],
  );
  return result.rows[0] ? journalEntryFromRow(result.rows[0]) : undefined;
}

/**
 * For each slot of the migration that is frozen now, how long ago (ms, by the
 * catalog's clock) its current freeze began: the write pause so far.
 */
export async function freezeAgesMs(db: Queryable, migrationId: number): Promise<Map<number, number>> {
  const result = await db.query<{ slot: number; age_ms: number }>(
    `SELECT DISTINCT ON (j.slot) j.slot, extract(epoch FROM clock_timestamp() - j.at)::float8 * 1000 AS age_ms
       FROM reshard.journal j JOIN reshard.slot s ON s.slot = j.slot AND s.state = 'frozen'
      WHERE j.migration_id = $1 AND j.step = 'freeze' AND j.action = 'begin'
      ORDER BY j.slot, j.id DESC`,
    [migrationId],
  );
  return new Map(result.rows.map((row) => [row.slot, row.age_ms]));
}
