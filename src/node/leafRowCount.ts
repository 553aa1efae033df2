import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/**
 * Exact row count of one leaf (attached or standalone): what doctor weighs
 * before it lets a leaf go. A full scan of that one leaf, so it is only asked
 * for leaves already found out of place.
 */
export async function leafRowCount(db: Queryable, schema: string, leaf: string): Promise<number> {
  const result = await db.query<{ rows: string }>(`SELECT count(*)::text AS rows FROM ${quoteQualified(schema, leaf)}`);
  return Number(result.rows[0]!.rows);
}
