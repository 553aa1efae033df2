import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/** Cumulative counters of one hash partition (summed over the tables given), as pg_stat_user_tables keeps them. */
export interface LeafActivity {
  /** The partition's bound: FOR VALUES WITH (MODULUS modulus, REMAINDER remainder). */
  modulus: number;
  remainder: number;
  /** Tuples inserted + updated + deleted since the statistics were last reset. */
  tuplesWritten: number;
  /** Sequential + index scans started on the leaf. */
  scans: number;
}

/**
 * Every attached hash partition of `tables` on this node with its cumulative
 * write and scan counters, summed per (modulus, remainder) over the tables.
 * The counters only grow (until a statistics reset): load is the difference
 * between two readings. PostgreSQL flushes a backend's counters at most about
 * once a second (and an idle one within about 10 s), so a reading lags by that.
 */
export async function leafActivity(db: Queryable, tables: readonly { schema: string; name: string }[]): Promise<LeafActivity[]> {
  if (tables.length === 0) return [];
  const result = await db.query<{ bound: string; written: string; scans: string }>(
    `SELECT pg_get_expr(c.relpartbound, c.oid) AS bound,
            sum(coalesce(s.n_tup_ins, 0) + coalesce(s.n_tup_upd, 0) + coalesce(s.n_tup_del, 0))::text AS written,
            sum(coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0))::text AS scans
       FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid
       LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE i.inhparent = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)
      GROUP BY 1`,
    [tables.map((table) => quoteQualified(table.schema, table.name))],
  );
  const leaves: LeafActivity[] = [];
  for (const row of result.rows) {
    const match = /modulus (\d+), remainder (\d+)/i.exec(row.bound);
    if (!match) continue;
    leaves.push({ modulus: Number(match[1]), remainder: Number(match[2]), tuplesWritten: Number(row.written), scans: Number(row.scans) });
  }
  return leaves;
}
