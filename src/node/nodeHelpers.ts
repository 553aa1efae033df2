import type { Queryable } from '../core/queryable.js';

/** reshard's own objects on a data node live in this schema (not the catalog's). */
export const NODE_SCHEMA = 'reshard_node';

/** The SQLSTATE a fenced slot raises: clients treat it as "re-route and retry". */
export const FENCE_SQLSTATE = 'RSM01';

/** Installs the fence trigger function. Idempotent. */
export async function installNodeHelpers(db: Queryable): Promise<void> {
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${NODE_SCHEMA}`);
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.reject_write() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = '${FENCE_SQLSTATE}',
    MESSAGE = format('reshard: %I is frozen while its slot moves to another node', TG_TABLE_NAME),
    HINT = 'refresh the slot map and retry on the new owner';
END
$fn$`);
}
