import { assert } from '../core/assert.js';
import { quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
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

/** SQL: true when every column of `parent` (a quoted literal of its name) is of a RECORD_HASHABLE_TYPES type. */
export function byRecordSql(parent: string): string {
  return `(SELECT coalesce(bool_and(ty.typnamespace = 'pg_catalog'::regnamespace AND ty.typname = ANY (ARRAY[${RECORD_HASHABLE_TYPES.map(quoteLiteral).join(', ')}])
                                  AND (a.attcollation = 0 OR coalesce(co.collisdeterministic, false))), false)
             FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE a.attrelid = to_regclass(${parent}) AND a.attnum > 0 AND NOT a.attisdropped)`;
}

/** Per table (in order), how its rows are hashed, decided from its parent's column types on this node. */
export async function rowHashesOf(db: Queryable, tables: readonly Pick<SlotTable, 'schema' | 'name'>[]): Promise<RowHash[]> {
  const flags = tables.map((table) => byRecordSql(quoteLiteral(quoteQualified(table.schema, table.name))));
  const result = await db.query<{ by_record: boolean[] }>(`SELECT ARRAY[${flags.join(', ')}]::boolean[] AS by_record`);
  return result.rows[0]!.by_record.map((byRecord) => (byRecord ? 'record' : 'text'));
}

/** One table's leaf on one node: rows and checksum, and how the rows were hashed. */
export async function leafStats(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<LeafStats & { rowHash: RowHash }> {
  return (await slotStats(db, [table], slot, modulus))[0]!;
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

/**
 * Row count and checksum of the slot's leaf of every table, in one round
 * trip; each table's rows hashed as its column types allow (decided in the
 * same statement, so no lookup of its own).
 */
export async function slotStats(db: Queryable, tables: readonly SlotTable[], slot: number, modulus: number): Promise<(LeafStats & { rowHash: RowHash })[]> {
  const parts = tables.map((table) => {
    const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
    const byRecord = byRecordSql(quoteLiteral(quoteQualified(table.schema, table.name)));
    // The CASE is decided once per statement (an init plan): the record hash is never called on a row it cannot hash.
    return `(SELECT json_build_array(count(*)::text, coalesce(sum(CASE WHEN ${byRecord} THEN hash_record_extended(t, 0) ELSE hashtextextended(t::text, 0) END), 0)::text, ${byRecord}) FROM ${leaf} t)`;
  });
  const result = await db.query<{ stats: [string, string, boolean][] }>(`SELECT json_build_array(${parts.join(', ')}) AS stats`);
  return result.rows[0]!.stats.map(([rows, checksum, byRecord]) => ({ rows: Number(rows), checksum, rowHash: byRecord ? 'record' : 'text' }));
}

/**
 * The slot's stats on both nodes. Each side decides its tables' hashing from
 * its own column types, which are the same on both (the target's tables are
 * made from the same definitions); a disagreement is a broken invariant.
 */
export async function slotStatsOnBoth(
  source: Queryable,
  target: Queryable,
  tables: readonly SlotTable[],
  slot: number,
  modulus: number,
): Promise<{ onSource: LeafStats[]; onTarget: LeafStats[]; rowHashes: RowHash[] }> {
  const [onSource, onTarget] = await Promise.all([slotStats(source, tables, slot, modulus), slotStats(target, tables, slot, modulus)]);
  const rowHashes = onSource.map((stats) => stats.rowHash);
  assert(onTarget.every((stats, index) => stats.rowHash === rowHashes[index]), `slot ${slot}'s tables hash the same way on source and target (${rowHashes.join(', ')})`);
  const counts = (side: readonly LeafStats[]): LeafStats[] => side.map(({ rows, checksum }) => ({ rows, checksum }));
  return { onSource: counts(onSource), onTarget: counts(onTarget), rowHashes };
}
