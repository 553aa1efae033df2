import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import type { SlotTable } from './slotPartitions.js';

/** How a sharded table's parent and leaves on one node identify rows to logical replication. */
export interface ReplicaIdentityReport {
  parentExists: boolean;
  /** The parent's primary key columns in key order; empty when it has none. */
  primaryKey: string[];
  parentHasIdentity: boolean;
  /** Leaves whose UPDATEs and DELETEs a publication would refuse to replicate. */
  leavesWithoutIdentity: string[];
}

/**
 * A relation can replicate UPDATE and DELETE when its replica identity names
 * something that exists: the default needs a primary key, USING INDEX needs
 * that index; FULL always works (slowly); NOTHING never does.
 */
const HAS_IDENTITY = `(c.relreplident = 'f'
   OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary))
   OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisreplident)))`;

export async function replicaIdentityReport(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<ReplicaIdentityReport> {
  const parent = await db.query<{ exists: boolean; has_identity: boolean | null; primary_key: string[] | null }>(
    `SELECT c.oid IS NOT NULL AS exists,
            ${HAS_IDENTITY} AS has_identity,
            (SELECT array_agg(a.attname::text ORDER BY k.position)
               FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position), pg_attribute a
              WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum) AS primary_key
       FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid`,
    [quoteQualified(table.schema, table.name)],
  );
  const row = parent.rows[0]!;
  if (!row.exists) return { parentExists: false, primaryKey: [], parentHasIdentity: false, leavesWithoutIdentity: [] };
  const leaves = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
      WHERE h.inhparent = to_regclass($1) AND NOT ${HAS_IDENTITY}
      ORDER BY c.relname`,
    [quoteQualified(table.schema, table.name)],
  );
  return {
    parentExists: true,
    primaryKey: row.primary_key ?? [],
    parentHasIdentity: row.has_identity ?? false,
    leavesWithoutIdentity: leaves.rows.map((leaf) => leaf.relname),
  };
}
