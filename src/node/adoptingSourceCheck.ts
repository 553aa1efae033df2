import type { Queryable } from '../plumbing/queryable.js';

/**
 * The SQLSTATE of the adopting-source check: the table a call was routed to
 * as "the table being adopted" is no longer that table on this node (the
 * adoption switched, so the name is the sharded parent now, or it was undone
 * and renamed away): "read the adoption's state again and route by it".
 */
export const NOT_ADOPTING_SQLSTATE = 'RSM04';

/** `reshard_node.adopting_source(schema, name)`: see installAdoptingSourceCheck. */
const CHECK_FUNCTION = 'reshard_node.adopting_source';

/** The check as a statement to prepare once per connection: $1 the table's schema, $2 its name. */
export const ADOPTING_SOURCE_CHECK_PREPARED_SQL = `SELECT ${CHECK_FUNCTION}($1::text, $2::text)`;

/**
 * PL/pgSQL for a name check's function (variables `qualified` text,
 * `relation` oid, `kind` "char"): the table of that name locked ACCESS
 * SHARE, then its oid and relkind read — after the lock, so the name cannot
 * move any more and its lookup sees every rename committed before it. Both
 * stay NULL when no table has the name.
 */
export const LOCKED_RELATION_BY_NAME = `  IF to_regclass(qualified) IS NOT NULL THEN
    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS SHARE MODE', qualified);
    SELECT c.oid, c.relkind INTO relation, kind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass(qualified);
  END IF;`;

/**
 * Installs the check a router sends, in the same implicit transaction and
 * round trip, in front of every statement it sends to a node that still
 * holds a table being adopted (AdoptingTable): the name must still be that
 * plain table. Without it, a router that missed the switch (a stalled
 * process, a lost notification) would reach the sharded parent that took the
 * name, where an UPDATE or a SELECT of a key another node owns matches 0
 * rows with no error. The check takes the table's ACCESS SHARE lock by name
 * first and holds it to the end of the call's transaction, so the
 * adoption's rename (ACCESS EXCLUSIVE) cannot slip in between the check and
 * the statement. The node schema exists (installNodeHelpers).
 */
export async function installAdoptingSourceCheck(db: Queryable): Promise<void> {
  await db.query(`CREATE OR REPLACE FUNCTION ${CHECK_FUNCTION}(table_schema text, table_name text) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  qualified text := format('%I.%I', adopting_source.table_schema, adopting_source.table_name);
  relation oid;
  kind "char";
BEGIN
${LOCKED_RELATION_BY_NAME}
  IF kind IS DISTINCT FROM 'r' THEN
    RAISE EXCEPTION USING
      ERRCODE = '${NOT_ADOPTING_SQLSTATE}',
      MESSAGE = format('reshard: %s on this node is no longer the table being adopted (its adoption switched or was undone)', qualified),
      HINT = 'read the adoption''s state again and route the call by it';
  END IF;
END
$fn$`);
}
