import type pg from 'pg';
import { from as copyFrom, type CopyStreamQuery } from 'pg-copy-streams';
import { quoteIdent, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

export type CopyInputFormat = 'text' | 'csv';

/**
 * `COPY schema.table (columns) FROM STDIN` into a sharded table's parent on
 * one node: PostgreSQL routes each row to the slot's leaf, and refuses a row
 * whose slot the node does not own ("no partition … found for row") or whose
 * leaf is fenced. The caller writes lines to the stream and ends it.
 */
export function copyRowsIn(client: pg.ClientBase, schema: string, table: string, columns: readonly string[], format: CopyInputFormat): CopyStreamQuery {
  const columnList = columns.map(quoteIdent).join(', ');
  return client.query(copyFrom(`COPY ${quoteQualified(schema, table)} (${columnList}) FROM STDIN (FORMAT ${format})`));
}

/** The table's columns in their order, as COPY without a column list expects them. */
export async function tableColumns(db: Queryable, schema: string, table: string): Promise<string[]> {
  const result = await db.query<{ attname: string }>(
    `SELECT attname FROM pg_attribute
      WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
      ORDER BY attnum`,
    [quoteQualified(schema, table)],
  );
  return result.rows.map((row) => row.attname);
}
