import type pg from 'pg';
import { ReshardError } from '../core/errors.js';
import { shardKeyTypeFromPostgres, type ShardKeyType } from '../core/hash.js';
import { quoteIdent, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

export interface ParentTableSpec {
  schema: string;
  name: string;
  shardKey: string[];
  /** The column and constraint list, as in `CREATE TABLE t ( <definition> )`. */
  definition: string;
}

function createParentSql(spec: ParentTableSpec): string {
  return `CREATE TABLE ${quoteQualified(spec.schema, spec.name)} (${spec.definition}) PARTITION BY HASH (${spec.shardKey.map(quoteIdent).join(', ')})`;
}

/**
 * Runs the CREATE through the extended protocol (a named statement), which
 * refuses more than one command: a definition cannot smuggle a second statement.
 */
async function createParent(client: pg.ClientBase, spec: ParentTableSpec): Promise<void> {
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(spec.schema)}`);
  await client.query({ text: createParentSql(spec), name: `reshard_create_parent_${Date.now()}_${Math.random().toString(36).slice(2)}` });
}

/**
 * Creates the parent inside a transaction that is always rolled back, and
 * reads back what PostgreSQL made of it: the key types and the primary key.
 */
export async function validateParentTable(client: pg.ClientBase, spec: ParentTableSpec): Promise<ShardKeyType[]> {
  await client.query('BEGIN');
  try {
    try {
      await createParent(client, spec);
    } catch (error) {
      throw explainCreateError(spec, error);
    }
    const oid = await parentOid(client, spec);
    const columns = await client.query<{ attname: string; type: string }>(
      `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
         FROM unnest($2::text[]) WITH ORDINALITY AS k(name, position)
         JOIN pg_attribute a ON a.attrelid = $1 AND a.attname = k.name
        ORDER BY k.position`,
      [oid, spec.shardKey],
    );
    const keyTypes = columns.rows.map((column) => {
      const type = shardKeyTypeFromPostgres(column.type);
      if (!type) {
        throw new ReshardError('unsupported', `shard key column "${column.attname}" has type ${column.type}, which reshard cannot shard by`, 'use a bigint, integer, text or uuid key');
      }
      return type;
    });
    const primaryKey = await client.query<{ attname: string }>(
      `SELECT a.attname FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = $1 AND i.indisprimary`,
      [oid],
    );
    if (primaryKey.rows.length === 0) {
      throw new ReshardError('bad_input', `table "${spec.name}" has no primary key`, `add PRIMARY KEY (${spec.shardKey.join(', ')}, …) to its definition: moves and replication need one`);
    }
    return keyTypes;
  } finally {
    await client.query('ROLLBACK');
  }
}

function explainCreateError(spec: ParentTableSpec, error: unknown): ReshardError {
  // Already explained (a lost connection, a timeout): not a problem of the definition.
  if (error instanceof ReshardError) return error;
  const pgError = error as { code?: string; message?: string };
  if (pgError.code === '0A000' && /unique constraint|partitioning columns|partition key/i.test(pgError.message ?? '')) {
    return new ReshardError('bad_input', `the primary key of "${spec.name}" does not include the shard key (${spec.shardKey.join(', ')})`, 'add the shard key columns to the primary key');
  }
  if (pgError.code === '42703') {
    return new ReshardError('bad_input', `the shard key of "${spec.name}" names a column that is not in its definition (${pgError.message})`, 'use a column of the table as --key');
  }
  if (pgError.code === '42P07') {
    return new ReshardError('conflict', `a table named "${spec.name}" already exists on a node`, 'choose another name or drop the existing table');
  }
  if (pgError.code === '42601' && /multiple commands/i.test(pgError.message ?? '')) {
    return new ReshardError('bad_input', `the definition of "${spec.name}" contains more than one SQL statement`, 'give only the column and constraint list');
  }
  return new ReshardError('bad_input', `PostgreSQL refused the definition of "${spec.name}": ${pgError.message ?? String(error)}`, 'correct the column list');
}

export async function parentOid(db: Queryable, spec: Pick<ParentTableSpec, 'schema' | 'name'>): Promise<number> {
  const result = await db.query<{ oid: number | null }>('SELECT to_regclass($1)::oid::int AS oid', [quoteQualified(spec.schema, spec.name)]);
  const oid = result.rows[0]?.oid;
  if (oid === null || oid === undefined) {
    throw new ReshardError('precondition', `the parent table "${spec.name}" is missing on a node`, 'run `reshard doctor` to find the drift');
  }
  return oid;
}

/**
 * Creates the parent (and its schema) on one node; the caller's transaction
 * decides. With `replaceEmpty`, a parent left behind by an earlier membership
 * of the node (hash-partitioned, no partition, hence no row) is dropped and
 * made again from the catalog's definition; anything else of that name is a conflict.
 */
export async function createParentTable(client: pg.ClientBase, spec: ParentTableSpec, options: { replaceEmpty?: boolean } = {}): Promise<void> {
  if (options.replaceEmpty && (await isEmptyHashParent(client, spec))) await dropEmptyParent(client, spec);
  try {
    await createParent(client, spec);
  } catch (error) {
    throw explainCreateError(spec, error);
  }
}

/** Drops a left-behind empty parent, locked first so that no partition can be attached between the check and the drop. */
async function dropEmptyParent(client: pg.ClientBase, spec: ParentTableSpec): Promise<void> {
  const parent = quoteQualified(spec.schema, spec.name);
  await client.query(`LOCK TABLE ${parent} IN ACCESS EXCLUSIVE MODE`);
  if (!(await isEmptyHashParent(client, spec))) return;
  try {
    await client.query(`DROP TABLE ${parent}`);
  } catch (error) {
    if ((error as { code?: string }).code !== '2BP01') throw error;
    throw new ReshardError('conflict', `the node still has an empty table "${spec.name}" from before, and other objects depend on it (${(error as Error).message})`,
      `drop those objects or the table on the node (DROP TABLE ${parent} CASCADE), then add the node again`);
  }
}

/** A hash-partitioned table with no partition at all: what a node keeps of a table after its last slot left. */
async function isEmptyHashParent(db: Queryable, spec: Pick<ParentTableSpec, 'schema' | 'name'>): Promise<boolean> {
  const result = await db.query<{ empty: boolean }>(
    `SELECT NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = p.partrelid) AS empty
       FROM pg_partitioned_table p
      WHERE p.partrelid = to_regclass($1) AND p.partstrat = 'h'`,
    [quoteQualified(spec.schema, spec.name)],
  );
  return result.rows[0]?.empty === true;
}
