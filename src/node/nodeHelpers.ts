import type { Queryable } from '../plumbing/queryable.js';

/** reshard's own objects on a data node live in this schema (not the catalog's). */
export const NODE_SCHEMA = 'reshard_node';

/** The SQLSTATE a frozen slot raises (fence trigger, route check): "hold the call, retry after the switch". */
export const FENCE_SQLSTATE = 'RSM01';

/** The SQLSTATE of the route check for a slot that left this node: "retry on the owner named in DETAIL". */
export const MOVED_SQLSTATE = 'RSM02';

/**
 * Advisory lock class of the route check (`pg_advisory_xact_lock_shared(class, slot)`):
 * every routed transaction holds it shared on its slot until it ends; the fence and
 * the switch take it exclusive, so no transaction that passed the check is still open
 * when they commit. "rsrt".
 */
export const ROUTE_LOCK_CLASS = 0x7273_7274;

/**
 * Installs the fence trigger function, the node's slot state and the route
 * check. Idempotent (every move installs it on both ends before relying on it).
 *
 * `slot_state` is this node's own word on each slot it has taken part in a move
 * of: `owned`, `frozen` (the fence), `moved` with the new owner (the switch; kept
 * after cleanup as a tombstone). A slot without a row was never moved since these
 * helpers were installed: its leaves are where the slot map put them at table
 * creation, so the check lets it through.
 */
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
  await db.query(`CREATE TABLE IF NOT EXISTS ${NODE_SCHEMA}.slot_state (
  slot integer PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('owned', 'frozen', 'moved')),
  epoch bigint NOT NULL,
  owner text CHECK ((state = 'moved') = (owner IS NOT NULL)),
  changed_at timestamptz NOT NULL DEFAULT now()
)`);
  // DETAIL is JSON so that any client can parse the redirect; plpgsql reads the row with a fresh
  // snapshot after the lock (READ COMMITTED), so a check that waited for a fence sees 'frozen'.
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.route(slot integer, epoch bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  here ${NODE_SCHEMA}.slot_state;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(${ROUTE_LOCK_CLASS}, route.slot);
  SELECT * INTO here FROM ${NODE_SCHEMA}.slot_state s WHERE s.slot = route.slot;
  IF NOT FOUND OR here.state = 'owned' THEN
    RETURN;
  END IF;
  IF here.state = 'frozen' THEN
    RAISE EXCEPTION USING
      ERRCODE = '${FENCE_SQLSTATE}',
      MESSAGE = format('reshard: slot %s is frozen on this node while it moves', route.slot),
      DETAIL = json_build_object('slot', route.slot, 'state', 'frozen', 'epoch', here.epoch, 'routed_epoch', route.epoch)::text,
      HINT = 'hold the call and retry once the slot map shows the switch';
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = '${MOVED_SQLSTATE}',
    MESSAGE = format('reshard: slot %s moved to node %s', route.slot, here.owner),
    DETAIL = json_build_object('slot', route.slot, 'state', 'moved', 'owner', here.owner, 'epoch', here.epoch, 'routed_epoch', route.epoch)::text,
    HINT = 'retry on the node named in DETAIL (owner)';
END
$fn$`);
}
