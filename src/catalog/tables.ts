import { ReshardError } from '../core/errors.js';
import type { ShardKeyType } from '../core/hash.js';
import type { Queryable } from '../plumbing/queryable.js';

/** A sharded table: parent PARTITION BY HASH (shardKey) on every node. */
export interface ShardedTableRecord {
  schema: string;
  name: string;
  shardKey: string[];
  keyTypes: ShardKeyType[];
  colocationGroup: string;
  /** The column list it was created with, replayed on nodes added later. */
  definition: string;
}

interface TableRow {
  schema_name: string;
  table_name: string;
  shard_key: string[];
  key_types: ShardKeyType[];
  colocation_group: string;
  definition: string;
}

export function describeTable(table: Pick<ShardedTableRecord, 'schema' | 'name'>): string {
  return table.schema === 'public' ? table.name : `${table.schema}.${table.name}`;
}

/** Sharded tables ordered so that a colocation group's first table comes first (served ones: not a table still being adopted). */
export async function listShardedTables(db: Queryable): Promise<ShardedTableRecord[]> {
  const result = await db.query<TableRow>(
    `SELECT schema_name, table_name, shard_key, key_types, colocation_group, definition
       FROM reshard.sharded_table WHERE state = 'active' ORDER BY colocation_group, created_at, schema_name, table_name`,
  );
  return result.rows.map((row) => ({
    schema: row.schema_name,
    name: row.table_name,
    shardKey: row.shard_key,
    keyTypes: row.key_types,
    colocationGroup: row.colocation_group,
    definition: row.definition,
  }));
}

export async function getShardedTable(db: Queryable, schema: string, name: string): Promise<ShardedTableRecord> {
  const tables = await listShardedTables(db);
  const table = tables.find((candidate) => candidate.schema === schema && candidate.name === name);
  if (!table) {
    const known = tables.map(describeTable);
    throw new ReshardError('not_found', `no sharded table named "${describeTable({ schema, name })}"`, `use one of: ${known.join(', ') || '(none; create one with `reshard table create`)'}`);
  }
  return table;
}

/** The key types of a colocation group, or undefined if the group does not exist yet. */
export async function colocationGroupKeyTypes(db: Queryable, group: string): Promise<ShardKeyType[] | undefined> {
  const result = await db.query<{ key_types: ShardKeyType[] }>('SELECT key_types FROM reshard.colocation_group WHERE name = $1', [group]);
  return result.rows[0]?.key_types;
}

export async function insertShardedTable(db: Queryable, table: ShardedTableRecord): Promise<void> {
  await db.query('INSERT INTO reshard.colocation_group (name, key_types) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [table.colocationGroup, table.keyTypes]);
  try {
    await db.query(
      `INSERT INTO reshard.sharded_table (schema_name, table_name, shard_key, key_types, colocation_group, definition)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [table.schema, table.name, table.shardKey, table.keyTypes, table.colocationGroup, table.definition],
    );
  } catch (error) {
    if ((error as { code?: string }).code === '23505') {
      throw new ReshardError('conflict', `the sharded table "${describeTable(table)}" already exists`, 'choose another name');
    }
    throw error;
  }
}
