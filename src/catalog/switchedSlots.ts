import type { Queryable } from '../plumbing/queryable.js';

/**
 * The slots of a migration whose switch is done — the new owner serves them —
 * whether or not their cleanup has finished: a move's state becomes 'done'
 * only after cleanup, so counting 'done' moves said "0 / 64 switched" while
 * all 64 had switched. The switch is the point of no return, so a switch
 * journaled done stays done.
 */
export async function switchedSlots(db: Queryable, migrationId: number): Promise<Set<number>> {
  const result = await db.query<{ slot: number }>(
    `SELECT DISTINCT j.slot FROM reshard.journal j
      WHERE j.migration_id = $1 AND j.step = 'switch' AND j.action = 'done' AND j.slot IS NOT NULL
     UNION
     SELECT mv.slot FROM reshard.move mv WHERE mv.migration_id = $1 AND mv.state = 'done'`,
    [migrationId],
  );
  return new Set(result.rows.map((row) => row.slot));
}
