import type { Queryable } from '../plumbing/queryable.js';
import { installAdoptingSourceCheck } from './adoptingSourceCheck.js';

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
  await installRowSums(db);
  await installReplayWait(db);
  await installAdoptingSourceCheck(db);
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
  // A split or a merge changes which keys a slot id holds, and a move's attach makes this node serve a
  // slot it may have served before: work routed at an epoch before that (a map that does not know the
  // change) is refused, so its router routes the key again.
  await db.query(`ALTER TABLE ${NODE_SCHEMA}.slot_state ADD COLUMN IF NOT EXISTS min_epoch bigint`);
  // The refusal of a route (always raises). DETAIL is JSON so that any client can parse the redirect.
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.refuse_route(slot integer, epoch bigint, here ${NODE_SCHEMA}.slot_state) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  IF here.state = 'owned' THEN
    RAISE EXCEPTION USING
      ERRCODE = '${FENCE_SQLSTATE}',
      MESSAGE = format('reshard: slot %s changed on this node at epoch %s (a split, a merge or a move here); this call was routed at epoch %s', refuse_route.slot, here.min_epoch, refuse_route.epoch),
      DETAIL = json_build_object('slot', refuse_route.slot, 'state', 'changed', 'epoch', here.min_epoch, 'routed_epoch', refuse_route.epoch)::text,
      HINT = 'refresh the slot map and route the key again';
  END IF;
  IF here.state = 'frozen' THEN
    RAISE EXCEPTION USING
      ERRCODE = '${FENCE_SQLSTATE}',
      MESSAGE = format('reshard: slot %s is frozen on this node while it moves', refuse_route.slot),
      DETAIL = json_build_object('slot', refuse_route.slot, 'state', 'frozen', 'epoch', here.epoch, 'routed_epoch', refuse_route.epoch)::text,
      HINT = 'hold the call and retry once the slot map shows the switch';
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = '${MOVED_SQLSTATE}',
    MESSAGE = format('reshard: slot %s moved to node %s', refuse_route.slot, here.owner),
    DETAIL = json_build_object('slot', refuse_route.slot, 'state', 'moved', 'owner', here.owner, 'epoch', here.epoch, 'routed_epoch', refuse_route.epoch)::text,
    HINT = 'retry on the node named in DETAIL (owner)';
END
$fn$`);
  // plpgsql reads the row with a fresh snapshot after the lock (READ COMMITTED), so a check that
  // waited for a fence sees 'frozen'.
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.route(slot integer, epoch bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  here ${NODE_SCHEMA}.slot_state;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(${ROUTE_LOCK_CLASS}, route.slot);
  SELECT * INTO here FROM ${NODE_SCHEMA}.slot_state s WHERE s.slot = route.slot;
  IF NOT FOUND OR (here.state = 'owned' AND route.epoch >= coalesce(here.min_epoch, 0)) THEN
    RETURN;
  END IF;
  PERFORM ${NODE_SCHEMA}.refuse_route(route.slot, route.epoch, here);
END
$fn$`);
  // The route lease: the same check, but the route lock is taken at session level and kept after
  // success, so later statements of this session on the slot need no check (the fence and the switch
  // wait for it, or end the session). Taken once per session (a second success does not stack it);
  // released before a refusal.
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.route_lease(slot integer, epoch bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  here ${NODE_SCHEMA}.slot_state;
BEGIN
  IF NOT ${NODE_SCHEMA}.holds_route_lease(route_lease.slot) THEN
    PERFORM pg_advisory_lock_shared(${ROUTE_LOCK_CLASS}, route_lease.slot);
  END IF;
  SELECT * INTO here FROM ${NODE_SCHEMA}.slot_state s WHERE s.slot = route_lease.slot;
  IF NOT FOUND OR (here.state = 'owned' AND route_lease.epoch >= coalesce(here.min_epoch, 0)) THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_unlock_shared(${ROUTE_LOCK_CLASS}, route_lease.slot);
  PERFORM ${NODE_SCHEMA}.refuse_route(route_lease.slot, route_lease.epoch, here);
END
$fn$`);
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.holds_route_lease(slot integer) RETURNS boolean LANGUAGE sql AS $fn$
SELECT EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.pid = pg_backend_pid() AND l.locktype = 'advisory' AND l.granted AND l.mode = 'ShareLock'
                  AND l.classid = ${ROUTE_LOCK_CLASS}::bigint::oid AND l.objid = slot::bigint::oid AND l.objsubid = 2)
$fn$`);
  // Gives up this session's leases on the given slots (every hold of each; none held is no error).
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.release_route_leases(slots integer[]) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  leased integer;
BEGIN
  FOREACH leased IN ARRAY release_route_leases.slots LOOP
    WHILE ${NODE_SCHEMA}.holds_route_lease(leased) LOOP
      PERFORM pg_advisory_unlock_shared(${ROUTE_LOCK_CLASS}, leased);
    END LOOP;
  END LOOP;
END
$fn$`);
}

/** The table the row-sum triggers write to: see `slotRowSums.ts`. */
export const ROW_SUMS_TABLE = `${NODE_SCHEMA}.leaf_row_sums`;

/** The row trigger function that keeps a leaf's row count and checksum as a sum of deltas: see `slotRowSums.ts`. */
export const ROW_SUMS_FUNCTION = `${NODE_SCHEMA}.sum_row_change`;

/**
 * The per-leaf sums of rows and row hashes that a move keeps while its slot
 * is about to be cut over (`slotRowSums.ts`): one row per change (inserts
 * only, so writers never wait on each other), and a `base` row from a scan.
 * The function is SECURITY DEFINER so that any role that writes to a leaf
 * adds its delta without a grant on reshard's schema; it hashes rows exactly
 * as the verification's scan does (hash_record_extended, only used for
 * tables whose every column hashes by value).
 */
async function installRowSums(db: Queryable): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS ${ROW_SUMS_TABLE} (
  leaf oid NOT NULL,
  rows bigint NOT NULL,
  hash_sum numeric NOT NULL,
  base boolean NOT NULL DEFAULT false
)`);
  await db.query(`CREATE INDEX IF NOT EXISTS leaf_row_sums_leaf ON ${ROW_SUMS_TABLE} (leaf)`);
  await db.query(`CREATE OR REPLACE FUNCTION ${ROW_SUMS_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ${ROW_SUMS_TABLE} (leaf, rows, hash_sum) VALUES (TG_RELID, 1, hash_record_extended(NEW, 0));
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO ${ROW_SUMS_TABLE} (leaf, rows, hash_sum) VALUES (TG_RELID, 0, hash_record_extended(NEW, 0)::numeric - hash_record_extended(OLD, 0));
  ELSE
    INSERT INTO ${ROW_SUMS_TABLE} (leaf, rows, hash_sum) VALUES (TG_RELID, -1, -hash_record_extended(OLD, 0)::numeric);
  END IF;
  RETURN NULL;
END
$fn$`);
  // A TRUNCATE is not summed row by row: it ends the sums (the verification then scans the leaf).
  await db.query(`CREATE OR REPLACE FUNCTION ${ROW_SUMS_FUNCTION}_truncate() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  DELETE FROM ${ROW_SUMS_TABLE} WHERE leaf = TG_RELID;
  RETURN NULL;
END
$fn$`);
}

/** Waits on the source until a subscription has replayed past a WAL position: see `installReplayWait`. */
export const REPLAY_WAIT_FUNCTION = `${NODE_SCHEMA}.wait_replayed`;

/**
 * `wait_replayed(subscription, lsn, wait_ms)`: true as soon as the
 * subscription's walsender reports a replay position at or past `lsn`, false
 * after `wait_ms` — the final sync's polling, on the server, in one round trip
 * (the walsender's positions are read live at each look, every millisecond).
 */
async function installReplayWait(db: Queryable): Promise<void> {
  await db.query(`CREATE OR REPLACE FUNCTION ${REPLAY_WAIT_FUNCTION}(subscription text, lsn pg_lsn, wait_ms integer) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  deadline timestamptz := clock_timestamp() + wait_ms * interval '1 millisecond';
BEGIN
  LOOP
    IF EXISTS (SELECT 1 FROM pg_stat_replication r WHERE r.application_name = wait_replayed.subscription AND r.replay_lsn >= wait_replayed.lsn) THEN
      RETURN true;
    END IF;
    IF clock_timestamp() >= deadline THEN
      RETURN false;
    END IF;
    PERFORM pg_sleep(0.001);
  END LOOP;
END
$fn$`);
}
