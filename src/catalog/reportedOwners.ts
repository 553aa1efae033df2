import type { Queryable } from '../plumbing/queryable.js';

/**
 * The nodes whose slots (other than `excludedSlots`) had calls reported by a
 * router within `windowMs`, by the slot map's owner now: the nodes the latency
 * guard can judge by the routers' numbers. Others it probes itself.
 */
export async function readReportedOwners(db: Queryable, window: { windowMs: number; excludedSlots: readonly number[] }): Promise<Set<string>> {
  const result = await db.query<{ owner: string }>(
    `SELECT DISTINCT s.owner FROM reshard.slot_load l JOIN reshard.slot s ON s.slot = l.slot
      WHERE l.period_start >= now() - $1 * interval '1 millisecond' AND l.slot <> ALL ($2::int[]) AND l.calls > 0`,
    [window.windowMs, window.excludedSlots],
  );
  return new Set(result.rows.map((row) => row.owner));
}
