import type { Queryable } from '../plumbing/queryable.js';

/**
 * Records bytes copied so far for several running moves in one statement, so
 * that any process reading the catalog (status, dashboard) sees byte-accurate
 * progress during a copy, not only when it ends. Never lowers a value, and
 * leaves moves that are no longer running alone (a late write must not touch
 * a move that finished or rolled back).
 */
export async function recordBytesCopied(db: Queryable, migrationId: number, bytesBySlot: ReadonlyMap<number, number>): Promise<void> {
  if (bytesBySlot.size === 0) return;
  await db.query(
    `UPDATE reshard.move m SET bytes_copied = greatest(m.bytes_copied, least(p.bytes, m.bytes_total))
       FROM unnest($2::int[], $3::bigint[]) AS p(slot, bytes)
      WHERE m.migration_id = $1 AND m.slot = p.slot AND m.state = 'running'`,
    [migrationId, [...bytesBySlot.keys()], [...bytesBySlot.values()]],
  );
}
