import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';

/** A reference table: whole on every node, written on its holder, replicated to the others. */
export interface ReferenceTableRecord {
  schema: string;
  name: string;
  /** The node that takes the writes and publishes them. */
  holder: string;
  /** The column list it was created with, replayed on nodes added later. */
  definition: string;
}

interface ReferenceTableRow {
  schema_name: string;
  table_name: string;
  holder: string;
  definition: string;
}

export async function listReferenceTables(db: Queryable): Promise<ReferenceTableRecord[]> {
  const result = await db.query<ReferenceTableRow>(
    'SELECT schema_name, table_name, holder, definition FROM reshard.reference_table ORDER BY created_at, schema_name, table_name');
  return result.rows.map((row) => ({ schema: row.schema_name, name: row.table_name, holder: row.holder, definition: row.definition }));
}

export async function insertReferenceTable(db: Queryable, table: ReferenceTableRecord): Promise<void> {
  try {
    await db.query('INSERT INTO reshard.reference_table (schema_name, table_name, holder, definition) VALUES ($1, $2, $3, $4)',
      [table.schema, table.name, table.holder, table.definition]);
  } catch (error) {
    if ((error as { code?: string }).code === '23505') {
      throw new ReshardError('conflict', `the reference table "${table.name}" already exists`, 'choose another name');
    }
    throw error;
  }
}

/** The holder of every reference table, by 'schema.name' (the router's read). */
export async function referenceHolders(db: Queryable): Promise<Map<string, string>> {
  const tables = await listReferenceTables(db);
  return new Map(tables.map((table) => [`${table.schema}.${table.name}`, table.holder]));
}

export async function setReferenceHolder(db: Queryable, table: Pick<ReferenceTableRecord, 'schema' | 'name'>, holder: string): Promise<void> {
  await db.query('UPDATE reshard.reference_table SET holder = $3 WHERE schema_name = $1 AND table_name = $2', [table.schema, table.name, holder]);
}
