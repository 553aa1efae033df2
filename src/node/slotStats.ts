import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../core/queryable.js';
import { leafName } from './leafName.js';
import type { SlotTable } from './slotPartitions.js';

/** What a slot's leaf of one table holds on one node. */
export interface LeafStats {
  rows: number;
  /**
   * Order-independent: the sum over rows of a 64-bit hash of the row's text
   * form, as a decimal string (numeric sum, no overflow). Equal on two nodes
   * iff they hold the same multiset of rows, up to hash collisions.
   */
  checksum: string;
}

export async function leafStats(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<LeafStats> {
  const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  const result = await db.query<{ rows: string; checksum: string }>(
    `SELECT count(*)::text AS rows, coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text AS checksum FROM ${leaf} t`,
  );
  const row = result.rows[0]!;
  return { rows: Number(row.rows), checksum: row.checksum };
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
export async function slotStats(db: Queryable, tables: readonly SlotTable[], slot: number, modulus: number): Promise<LeafStats[]> {
  const parts = tables.map((table) => {
    const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
    return `(SELECT json_build_array(count(*)::text, coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text) FROM ${leaf} t)`;
  });
  const result = await db.query<{ stats: [string, string][] }>(`SELECT json_build_array(${parts.join(', ')}) AS stats`);
  return result.rows[0]!.stats.map(([rows, checksum]) => ({ rows: Number(rows), checksum }));
}
