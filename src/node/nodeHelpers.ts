import { createHash } from 'node:crypto';
import { assert } from '../core/assert.js';
import type { Queryable } from '../plumbing/queryable.js';
import { installAdoptedTableCheck } from './adoptedTableCheck.js';
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
 * Advisory lock class of the node lease (`pg_advisory_lock_shared(class, 0)`,
 * session level): held by every session whose router may send it statements
 * without the route check. "rsnl".
 */
export const NODE_LEASE_LOCK_CLASS = 0x7273_6e6c;

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
  const { statements, version, functions, tables } = await helperStatements();
  // This version, and every function and table it makes still there (one dropped by hand is made again).
  const installed = await db.query<{ comment: string | null; functions: number; tables: number }>(
    `SELECT obj_description(to_regnamespace($1), 'pg_namespace') AS comment,
            (SELECT count(DISTINCT proname) FROM pg_proc WHERE pronamespace = to_regnamespace($1) AND proname = ANY ($2::text[]))::int AS functions,
            (SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace($1) AND relname = ANY ($3::text[]) AND relkind = 'r')::int AS tables`,
    [NODE_SCHEMA, functions, tables],
  );
  const found = installed.rows[0];
  if (found?.comment === version && found.functions === functions.length && found.tables === tables.length) return;
  for (const statement of statements) await db.query(statement);
  await db.query(`COMMENT ON SCHEMA ${NODE_SCHEMA} IS '${version}'`);
}

interface HelperStatements {
  statements: string[];
  version: string;
  /** The functions and tables they make in NODE_SCHEMA, by name. */
  functions: string[];
  tables: string[];
}

let recorded: Promise<HelperStatements> | undefined;

/**
 * Every statement of the helpers' install, recorded once per process (they
 * only run statements, reading no result), and their version: a hash of
 * them all, kept as the schema's comment once they are in. A node that has
 * this version is left alone: CREATE OR REPLACE FUNCTION writes the catalog
 * even when nothing changed, and every session of the node that planned a
 * statement calling the function (each routed call runs the route check)
 * plans it again — at the start of every migration, on every node, without it.
 */
function helperStatements(): Promise<HelperStatements> {
  recorded ??= (async () => {
    const statements: string[] = [];
    const recorder: Queryable = {
      query: async (text: string, values?: unknown[]) => {
        assert(values === undefined || values.length === 0, 'the helpers\' install statements take no parameters');
        statements.push(text);
        return { rows: [], rowCount: 0, command: '', oid: 0, fields: [] };
      },
    };
    await installEveryHelper(recorder);
    const made = (pattern: RegExp): string[] => [...new Set(statements.flatMap((statement) => [...statement.matchAll(pattern)].map((match) => match[1]!)))];
    return {
      statements,
      version: `reshard helpers ${createHash('sha256').update(statements.join('\n;\n')).digest('hex').slice(0, 16)}`,
      functions: made(new RegExp(`CREATE (?:OR REPLACE )?FUNCTION ${NODE_SCHEMA}\\.(\\w+)\\s*\\(`, 'g')),
      tables: made(new RegExp(`CREATE TABLE (?:IF NOT EXISTS )?${NODE_SCHEMA}\\.(\\w+)`, 'g')),
    };
  })();
  return recorded;
}

async function installEveryHelper(db: Queryable): Promise<void> {
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${NODE_SCHEMA}`);
  await installRowSums(db);
  await installReplayWait(db);
  await installAdoptingSourceCheck(db);
  await installAdoptedTableCheck(db);
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
  await installNodeLease(db);
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

/**
 * The node lease: a router's pooled session that passed one route check here
 * may send its single statements with no check afterwards, for any slot its
 * own map says this node serves, unfrozen. One session-level shared lock
 * marks the holders (one lock table entry per session, nothing to walk per
 * slot at each transaction's end), and `route_lease` records the slot map
 * epoch the holder's router had: the router raises it (`route_lease_seen`)
 * whenever its map shows one of this node's slots frozen or gone. Before a
 * slot leaves this node (the switch on the old owner), every holder whose
 * recorded epoch predates the slot's freeze is waited for, at most a bound,
 * then ended (`settle_route_leases`): its router has not shown it knows the
 * slot is moving (stalled, dead, behind), so it might still send the slot's
 * work here unchecked. A lease is granted only to a router whose map is at
 * least as new as every change this node has seen, so a router behind on
 * the map takes none. Transactions always carry the check (its transaction
 * lock is what the switch waits for); leases serve single statements, which
 * a switch cannot split.
 */
async function installNodeLease(db: Queryable): Promise<void> {
  await db.query(`CREATE UNLOGGED TABLE IF NOT EXISTS ${NODE_SCHEMA}.route_lease (
  pid integer PRIMARY KEY,
  backend_start timestamptz NOT NULL,
  epoch bigint NOT NULL
)`);
  // The route check, which also grants the node lease (true) when the router's map is new enough.
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.route_node_lease(slot integer, epoch bigint) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  here ${NODE_SCHEMA}.slot_state;
  newest bigint;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(${ROUTE_LOCK_CLASS}, route_node_lease.slot);
  SELECT * INTO here FROM ${NODE_SCHEMA}.slot_state s WHERE s.slot = route_node_lease.slot;
  IF FOUND AND NOT (here.state = 'owned' AND route_node_lease.epoch >= coalesce(here.min_epoch, 0)) THEN
    PERFORM ${NODE_SCHEMA}.refuse_route(route_node_lease.slot, route_node_lease.epoch, here);
  END IF;
  IF ${NODE_SCHEMA}.holds_node_lease() THEN
    RETURN true;
  END IF;
  SELECT max(greatest(s.epoch, coalesce(s.min_epoch, 0))) INTO newest FROM ${NODE_SCHEMA}.slot_state s;
  IF route_node_lease.epoch < coalesce(newest, 0) THEN
    RETURN false;
  END IF;
  PERFORM pg_advisory_lock_shared(${NODE_LEASE_LOCK_CLASS}, 0);
  INSERT INTO ${NODE_SCHEMA}.route_lease (pid, backend_start, epoch)
  SELECT a.pid, a.backend_start, route_node_lease.epoch FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
  ON CONFLICT (pid) DO UPDATE SET backend_start = excluded.backend_start, epoch = excluded.epoch;
  RETURN true;
END
$fn$`);
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.holds_node_lease() RETURNS boolean LANGUAGE sql AS $fn$
SELECT EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.pid = pg_backend_pid() AND l.locktype = 'advisory' AND l.granted AND l.mode = 'ShareLock'
                  AND l.classid = ${NODE_LEASE_LOCK_CLASS}::bigint::oid AND l.objid = 0::oid AND l.objsubid = 2)
$fn$`);
  // A router's word that these sessions of its own follow a map at least `epoch` new (upserted: a lease
  // taken in a transaction that then failed keeps its lock, not its row).
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.route_lease_seen(pids integer[], epoch bigint) RETURNS void LANGUAGE sql AS $fn$
INSERT INTO ${NODE_SCHEMA}.route_lease (pid, backend_start, epoch)
SELECT a.pid, a.backend_start, route_lease_seen.epoch FROM pg_stat_activity a WHERE a.pid = ANY (route_lease_seen.pids)
ON CONFLICT (pid) DO UPDATE SET backend_start = excluded.backend_start,
  epoch = CASE WHEN ${NODE_SCHEMA}.route_lease.backend_start = excluded.backend_start
               THEN greatest(${NODE_SCHEMA}.route_lease.epoch, excluded.epoch) ELSE excluded.epoch END
$fn$`);
  // A session of another role whose activity this user may not read (no pg_read_all_stats) shows no
  // backend_start or state: its record is matched by pid alone, and it is waited for as one at work.
  // Waits for every node lease holder to have a router that saw freeze_epoch: at most idle_wait_ms for one
  // idle outside a transaction (a stalled router's sessions sit idle: nothing in flight is lost by ending
  // them), at most wait_ms for one at work; then ends the rest. Returns those it ended.
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.settle_route_leases(freeze_epoch bigint, wait_ms integer, idle_wait_ms integer)
RETURNS TABLE (ended_pid integer, ended_application text, ended_state text) LANGUAGE plpgsql AS $fn$
DECLARE
  deadline timestamptz := clock_timestamp() + settle_route_leases.wait_ms * interval '1 millisecond';
  idle_deadline timestamptz := clock_timestamp() + least(settle_route_leases.idle_wait_ms, settle_route_leases.wait_ms) * interval '1 millisecond';
  ended integer[] := '{}';
  holder record;
  waiting boolean;
BEGIN
  IF settle_route_leases.freeze_epoch IS NULL THEN
    RETURN;
  END IF;
  LOOP
    waiting := false;
    -- pg_stat_activity is read once per transaction unless cleared: without this a holder first seen
    -- idle would still read idle once its router sent a call, and be ended at the idle bound mid-call.
    PERFORM pg_stat_clear_snapshot();
    FOR holder IN
      SELECT l.pid AS pid, coalesce(a.application_name, '') AS app, coalesce(a.state, '') AS st
        FROM pg_locks l
        LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        LEFT JOIN ${NODE_SCHEMA}.route_lease r ON r.pid = l.pid AND (a.backend_start IS NULL OR r.backend_start = a.backend_start)
       WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
         AND l.classid = ${NODE_LEASE_LOCK_CLASS}::bigint::oid AND l.objid = 0::oid AND l.objsubid = 2
         AND (r.epoch IS NULL OR r.epoch < settle_route_leases.freeze_epoch)
         AND NOT (l.pid = ANY (ended))
    LOOP
      -- An idle holder is looked at again just before it is ended: read earlier in this round, it may have started
      -- a call since (on a loaded node, long enough to reach its commit), which ending it would leave in doubt.
      IF holder.st = 'idle' AND clock_timestamp() >= idle_deadline AND clock_timestamp() < deadline THEN
        PERFORM pg_stat_clear_snapshot();
        holder.st := coalesce((SELECT a.state FROM pg_stat_activity a WHERE a.pid = holder.pid), '');
      END IF;
      IF clock_timestamp() >= deadline OR (holder.st = 'idle' AND clock_timestamp() >= idle_deadline) THEN
        PERFORM pg_terminate_backend(holder.pid);
        ended := ended || holder.pid;
        ended_pid := holder.pid;
        ended_application := holder.app;
        ended_state := holder.st;
        RETURN NEXT;
      ELSE
        waiting := true;
      END IF;
    END LOOP;
    EXIT WHEN NOT waiting;
    PERFORM pg_sleep(0.002);
  END LOOP;
END
$fn$`);
}
