import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/** Bytes one leaf takes on its node, indexes and TOAST included (0 when it does not exist). */
export async function leafSizeBytes(db: Queryable, schema: string, leaf: string): Promise<number> {
  const result = await db.query<{ bytes: string | null }>('SELECT pg_total_relation_size(to_regclass($1))::text AS bytes', [quoteQualified(schema, leaf)]);
  return Number(result.rows[0]?.bytes ?? 0);
}
