import type { MigrationJournalStep } from '../core/moveStepNames.js';
import type { Queryable } from '../plumbing/queryable.js';

/**
 * The journal's step for a whole migration's end in failure. `resume` puts a
 * failed migration back to running and clears its error; this entry keeps
 * the failure in its history.
 */
export const MIGRATION_FAILED_STEP: MigrationJournalStep = 'migration';

/** One time a migration stopped failed, as `finishMigration` journaled it. */
export interface MigrationFailure {
  at: Date;
  error: string;
}

/** The SQL that reads a migration's failures as a JSON array, oldest first (`m` is the migration row). */
export const MIGRATION_FAILURES_JSON = `coalesce((SELECT json_agg(json_build_object('at', j.at, 'error', j.detail->>'error') ORDER BY j.id)
    FROM reshard.journal j WHERE j.migration_id = m.id AND j.slot IS NULL AND j.step = '${MIGRATION_FAILED_STEP}' AND j.action = 'failed'), '[]'::json)`;

export function failuresFromJson(rows: readonly { at: string; error: string | null }[]): MigrationFailure[] {
  return rows.map((row) => ({ at: new Date(row.at), error: row.error ?? 'unknown error' }));
}

/** Every failure of one migration, oldest first, including the one it may be in now. */
export async function listMigrationFailures(db: Queryable, migrationId: number): Promise<MigrationFailure[]> {
  const result = await db.query<{ failures: { at: string; error: string | null }[] }>(
    `SELECT ${MIGRATION_FAILURES_JSON} AS failures FROM reshard.migration m WHERE m.id = $1`,
    [migrationId],
  );
  return failuresFromJson(result.rows[0]?.failures ?? []);
}
