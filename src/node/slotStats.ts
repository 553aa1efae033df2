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
 * How a row is hashed: `record` hashes the columns' values with their own
 * hash functions (about twice as fast: no text form is built); `text` hashes
 * the row's text form, for tables with a column type that has no extended
 * hash function (json, point, xml, …).
 */
export type RowHash = 'record' | 'text';

const ROW_HASH_SQL: Record<RowHash, string> = {
  record: 'sum(hash_record_extended(t, 0))',
  text: 'sum(hashtextextended(t::text, 0)::numeric)',
};

/** SQLSTATE of "could not identify an extended hash function for type …". */
const NO_HASH_FUNCTION = '42883';

function noHashFunction(error: unknown): boolean {
  return (error as { code?: string }).code === NO_HASH_FUNCTION;
}

function statsQuery(leaf: string, rowHash: RowHash): string {
  return `SELECT json_build_array(count(*)::text, coalesce(${ROW_HASH_SQL[rowHash]}, 0)::text) FROM ${leaf} t`;
}

/** One table's leaf, on one node, hashed by record where its types allow and by text form otherwise. */
export async function leafStats(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<LeafStats & { rowHash: RowHash }> {
  try {
    return { ...(await slotStats(db, [table], slot, modulus, 'record'))[0]!, rowHash: 'record' };
  } catch (error) {
    if (!noHashFunction(error)) throw error;
    return { ...(await slotStats(db, [table], slot, modulus, 'text'))[0]!, rowHash: 'text' };
  }
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

/** Row count and checksum of the slot's leaf of every table, in one round trip. */
export async function slotStats(db: Queryable, tables: readonly SlotTable[], slot: number, modulus: number, rowHash: RowHash = 'record'): Promise<LeafStats[]> {
  const parts = tables.map((table) => `(${statsQuery(quoteQualified(table.schema, leafName(table.name, slot, modulus)), rowHash)})`);
  const result = await db.query<{ stats: [string, string][] }>(`SELECT json_build_array(${parts.join(', ')}) AS stats`);
  return result.rows[0]!.stats.map(([rows, checksum]) => ({ rows: Number(rows), checksum }));
}

/**
 * The slot's stats on both nodes, hashed the same way on both: by record, or
 * — when either side meets a column type without an extended hash function
 * (an empty side never does) — by text form on both.
 */
export async function slotStatsOnBoth(
  source: Queryable,
  target: Queryable,
  tables: readonly SlotTable[],
  slot: number,
  modulus: number,
): Promise<{ onSource: LeafStats[]; onTarget: LeafStats[]; rowHash: RowHash }> {
  // allSettled: both sessions are idle again before a retry uses them.
  const [onSource, onTarget] = await Promise.allSettled([slotStats(source, tables, slot, modulus, 'record'), slotStats(target, tables, slot, modulus, 'record')]);
  if (onSource.status === 'fulfilled' && onTarget.status === 'fulfilled') return { onSource: onSource.value, onTarget: onTarget.value, rowHash: 'record' };
  for (const side of [onSource, onTarget]) if (side.status === 'rejected' && !noHashFunction(side.reason)) throw side.reason;
  const [sourceByText, targetByText] = await Promise.all([slotStats(source, tables, slot, modulus, 'text'), slotStats(target, tables, slot, modulus, 'text')]);
  return { onSource: sourceByText, onTarget: targetByText, rowHash: 'text' };
}
