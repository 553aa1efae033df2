import type { Queryable } from '../core/queryable.js';
import { JOURNAL_COLUMNS, journalEntryFromRow, type JournalEntry, type JournalRow } from './journal.js';

/** The newest journal entries of every migration, newest first: the event log of whoever runs them. */
export async function readJournalTail(db: Queryable, limit: number): Promise<JournalEntry[]> {
  const result = await db.query<JournalRow>(`SELECT ${JOURNAL_COLUMNS} FROM reshard.journal ORDER BY id DESC LIMIT $1`, [limit]);
  return result.rows.map(journalEntryFromRow);
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
