import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/** Exact row count of a table on one node (a partitioned parent counts its attached leaves): a full scan. */
export async function tableRowCount(db: Queryable, schema: string, table: string): Promise<number> {
  const result = await db.query<{ rows: string }>(`SELECT count(*)::text AS rows FROM ${quoteQualified(schema, table)}`);
  return Number(result.rows[0]!.rows);
}
