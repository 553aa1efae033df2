import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../core/queryable.js';
import { leafName } from './leafName.js';
import type { SlotTable } from './slotPartitions.js';

/** What a slot's leaf of one table holds on one node. */
export interface LeafStats {
  rows: number;
  /**
   * Order-independent: the sum over rows of a 64-bit hash of the row, as a
   * decimal string (numeric sum, no overflow). Equal on two nodes iff they
   * hold the same multiset of rows, up to hash collisions — when both sides
   * hashed the same way (see RowHash).
   */
  checksum: string;
}

/**
 * How a table's rows are hashed: `record` hashes the columns' values with
 * their types' own hash functions (2× to 17× faster: no text form is built);
 * `text` hashes the row's text form. Record hashing is used only where it
 * sees exactly what the text form sees (see RECORD_HASHABLE_TYPES).
 */
export type RowHash = 'record' | 'text';

/**
 * Built-in types whose extended hash depends on the value alone, the same on
 * every node and every supported version. Left out on purpose: enums (hashed
 * by their OID, which differs from node to node), domains, arrays, ranges and
 * composites (they may wrap an enum), types without an extended hash (json,
 * point, xml, …), and text under a nondeterministic collation (equal is not
 * identical there).
 */
const RECORD_HASHABLE_TYPES = [
  'int2', 'int4', 'int8', 'oid', 'numeric', 'float4', 'float8', 'bool', 'char', 'name', 'text', 'varchar', 'bpchar', 'bytea', 'uuid', 'jsonb',
  'date', 'time', 'timestamp', 'timestamptz', 'interval',
];

const ROW_HASH_SQL: Record<RowHash, string> = {
  record: 'sum(hash_record_extended(t, 0))',
  text: 'sum(hashtextextended(t::text, 0)::numeric)',
};

function statsQuery(leaf: string, rowHash: RowHash): string {
  return `SELECT json_build_array(count(*)::text, coalesce(${ROW_HASH_SQL[rowHash]}, 0)::text) FROM ${leaf} t`;
}

/** Per table (in order), how its rows are hashed, decided from its parent's column types on this node. */
export async function rowHashesOf(db: Queryable, tables: readonly Pick<SlotTable, 'schema' | 'name'>[]): Promise<RowHash[]> {
  const result = await db.query<{ position: string; by_record: boolean }>(
    `SELECT t.position::text, bool_and(ty.typnamespace = 'pg_catalog'::regnamespace AND ty.typname = ANY ($2::text[])
                                     AND (a.attcollation = 0 OR coalesce(co.collisdeterministic, false))) AS by_record
       FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position)
       JOIN pg_attribute a ON a.attrelid = to_regclass(t.name) AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_type ty ON ty.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation
      GROUP BY t.position`,
    [tables.map((table) => quoteQualified(table.schema, table.name)), RECORD_HASHABLE_TYPES],
  );
  const byRecord = new Map(result.rows.map((row) => [Number(row.position), row.by_record]));
  return tables.map((_, index) => (byRecord.get(index + 1) ? 'record' : 'text'));
}

/** One table's leaf on one node: rows and checksum, and how the rows were hashed. */
export async function leafStats(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<LeafStats & { rowHash: RowHash }> {
  const rowHashes = await rowHashesOf(db, [table]);
  return { ...(await slotStats(db, [table], slot, modulus, rowHashes))[0]!, rowHash: rowHashes[0]! };
}

/** Bytes on disk (heap, indexes, TOAST) of the slot's leaves of each table, per slot. */
export async function slotSizesOnNode(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<Map<number, number>> {
  const result = await db.query<{ bound: string; bytes: string }>(
    `SELECT pg_get_expr(c.relpartbound, c.oid) AS bound, pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1)`,
    [quoteQualified(table.schema, table.name)],
  );
  const sizes = new Map<number, number>();
  for (const row of result.rows) {
    const match = /remainder (\d+)/i.exec(row.bound);
    if (match) sizes.set(Number(match[1]), Number(row.bytes));
  }
  return sizes;
}

/** Row count and checksum of the slot's leaf of every table, in one round trip, each table hashed as `rowHashes` says. */
export async function slotStats(db: Queryable, tables: readonly SlotTable[], slot: number, modulus: number, rowHashes: readonly RowHash[]): Promise<LeafStats[]> {
  const parts = tables.map((table, index) => `(${statsQuery(quoteQualified(table.schema, leafName(table.name, slot, modulus)), rowHashes[index]!)})`);
  const result = await db.query<{ stats: [string, string][] }>(`SELECT json_build_array(${parts.join(', ')}) AS stats`);
  return result.rows[0]!.stats.map(([rows, checksum]) => ({ rows: Number(rows), checksum }));
}

/** How each session's tables hash, decided once per session (a migration does not change column types). */
const rowHashesBySession = new WeakMap<Queryable, Map<string, RowHash[]>>();

async function cachedRowHashes(db: Queryable, tables: readonly SlotTable[]): Promise<RowHash[]> {
  const key = tables.map((table) => quoteQualified(table.schema, table.name)).join(',');
  const known = rowHashesBySession.get(db) ?? new Map<string, RowHash[]>();
  rowHashesBySession.set(db, known);
  const cached = known.get(key);
  if (cached) return cached;
  const decided = await rowHashesOf(db, tables);
  known.set(key, decided);
  return decided;
}

/**
 * The slot's stats on both nodes, each table hashed the same way on both —
 * as the source's column types decide (the target's tables are made from
 * the same definitions).
 */
export async function slotStatsOnBoth(
  source: Queryable,
  target: Queryable,
  tables: readonly SlotTable[],
  slot: number,
  modulus: number,
): Promise<{ onSource: LeafStats[]; onTarget: LeafStats[]; rowHashes: RowHash[] }> {
  const rowHashes = await cachedRowHashes(source, tables);
  const [onSource, onTarget] = await Promise.all([slotStats(source, tables, slot, modulus, rowHashes), slotStats(target, tables, slot, modulus, rowHashes)]);
  return { onSource, onTarget, rowHashes };
}
