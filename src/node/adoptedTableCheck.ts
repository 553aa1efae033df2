import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { LOCKED_RELATION_BY_NAME, NOT_ADOPTING_SQLSTATE } from './adoptingSourceCheck.js';

/** The rollback's fence on the sharded table (adoptTarget's fenceAdoptedTable): the check refuses a table that has it. */
export const ADOPTED_TABLE_FENCE_TRIGGER = 'reshard_adopt_fence';

/** `reshard_node.adopted_table(schema, name)`: see installAdoptedTableCheck. */
const CHECK_FUNCTION = 'reshard_node.adopted_table';

/** The check as a statement to prepare once per connection: $1 the table's schema, $2 its name. */
export const ADOPTED_TABLE_CHECK_PREPARED_SQL = `SELECT ${CHECK_FUNCTION}($1::text, $2::text)`;

/**
 * A statement that reads nothing but plans over every leaf of the staged
 * table (no key to prune by), so that a router's session has the leaves
 * and their indexes in its caches before the switch renames the staged
 * table to the table's name (a rename keeps the leaves).
 */
export function warmStagedTableSql(schema: string, stagedName: string): string {
  return `SELECT FROM ${quoteQualified(schema, stagedName)} LIMIT 0`;
}

/**
 * Installs the check a router sends, in the same implicit transaction and
 * round trip, in front of a call routed by slot to a table whose adoption
 * switched but may still be rolled back (AdoptingTable, until
 * `forget-source`): the name must still be the sharded table on this node
 * (a partitioned table) and not fenced by a rollback under way. Else
 * (the rollback dropped it, gave the name back to the plain table, or is
 * carrying its rows back) it refuses with RSM04, the same answer as the
 * adopting-source check: "read the adoption's state again and route by it".
 * Without it a call routed at a stale state would read or update a node's
 * plain table of that name (0 rows, no error) or fail with undefined_table.
 * It takes the table's ACCESS SHARE lock by name first and holds it to the
 * end of the call's transaction, so the rollback's drop and renames cannot
 * slip in between the check and the statement. The node schema exists
 * (installNodeHelpers).
 */
export async function installAdoptedTableCheck(db: Queryable): Promise<void> {
  await db.query(`CREATE OR REPLACE FUNCTION ${CHECK_FUNCTION}(table_schema text, table_name text) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  qualified text := format('%I.%I', adopted_table.table_schema, adopted_table.table_name);
  relation oid;
  kind "char";
BEGIN
${LOCKED_RELATION_BY_NAME}
  IF kind IS DISTINCT FROM 'p'
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = relation AND t.tgname = '${ADOPTED_TABLE_FENCE_TRIGGER}') THEN
    RAISE EXCEPTION USING
      ERRCODE = '${NOT_ADOPTING_SQLSTATE}',
      MESSAGE = format('reshard: %s on this node is no longer the adopted sharded table (its adoption was rolled back, or is being rolled back)', qualified),
      HINT = 'read the adoption''s state again and route the call by it';
  END IF;
END
$fn$`);
}
