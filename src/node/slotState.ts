import type pg from 'pg';
import { quoteLiteral } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { NODE_SCHEMA, ROUTE_LOCK_CLASS } from './nodeHelpers.js';

/**
 * A node's own record of a slot (`reshard_node.slot_state`), written by the
 * moves: the fence writes `frozen`, the ATTACH on the target `owned`, the
 * switch `moved` on the source. `reshard_node.route(slot, epoch)` reads it.
 */
export type NodeSlotState = 'owned' | 'frozen' | 'moved';

/** The route check every routed call sends (`reshard_node.route(slot, epoch)`, installed by installNodeHelpers). */
export const ROUTE_FUNCTION = `${NODE_SCHEMA}.route`;

/** The route check as a statement to prepare once per connection: $1 the slot, $2 the epoch. */
export const ROUTE_CHECK_PREPARED_SQL = `SELECT ${ROUTE_FUNCTION}($1::integer, $2::bigint)`;

/** The route check as one statement, with integers we format ourselves (no user input reaches this text). */
export function routeCheckSql(slot: number, epoch: number): string {
  return `SELECT ${ROUTE_FUNCTION}(${int(slot)}, ${int(epoch)})`;
}

/** The route check that also grants the node lease (returns whether this session holds it), to prepare once per connection: $1 the slot, $2 the epoch. */
export const NODE_LEASE_PREPARED_SQL = `SELECT ${NODE_SCHEMA}.route_node_lease($1::integer, $2::bigint)`;

/** The node lease check as one statement (integers we format ourselves). */
export function nodeLeaseSql(slot: number, epoch: number): string {
  return `SELECT ${NODE_SCHEMA}.route_node_lease(${int(slot)}, ${int(epoch)}) AS leased`;
}

/** A router's word that its sessions `pids` here follow a map at least `epoch` new. */
export function routeLeaseSeenSql(pids: readonly number[], epoch: number): string {
  return `SELECT ${NODE_SCHEMA}.route_lease_seen(ARRAY[${pids.map(int).join(', ')}]::integer[], ${int(epoch)})`;
}


/** How long the fence and the switch wait for routed transactions on the slot before ending them. */
export const ROUTE_HOLDERS_WAIT_MS_DEFAULT = 1_000;

function upsert(slot: number, state: NodeSlotState, epoch: number, owner: string | null): string {
  return `INSERT INTO ${NODE_SCHEMA}.slot_state (slot, state, epoch, owner) VALUES (${int(slot)}, '${state}', ${int(epoch)}, ${owner === null ? 'NULL' : quoteLiteral(owner)})
ON CONFLICT (slot) DO UPDATE SET state = excluded.state, epoch = excluded.epoch, owner = excluded.owner, changed_at = now()`;
}

function int(value: number): string {
  if (!Number.isSafeInteger(value)) throw new Error(`expected an integer, got ${String(value)}`);
  return String(value);
}

/** Statement for the fence's transaction: the slot is frozen here. */
export function slotFrozenStatement(slot: number, epoch: number): string {
  return upsert(slot, 'frozen', epoch, null);
}

/** Statement for a split's exchange: the slot (a child or a parent again) is served here. */
export function slotOwnedStatement(slot: number, epoch: number): string {
  return upsert(slot, 'owned', epoch, null);
}

/**
 * Statement for a move's attach on the target: the slot is served here from
 * `epoch` on, and a route older than that is refused (a router that missed an
 * earlier move of this slot away from this node must not reach the new leaf).
 */
export function slotOwnedSinceStatement(slot: number, epoch: number): string {
  return `${upsert(slot, 'owned', epoch, null)}, min_epoch = greatest(coalesce(${NODE_SCHEMA}.slot_state.min_epoch, 0), excluded.epoch)`;
}

/**
 * Statement that waits (the transaction's lock_timeout) until no routed
 * transaction that passed the check on `slot` is still open, and keeps new
 * ones waiting until this transaction ends.
 */
export function routeLockStatement(slot: number): string {
  return `SELECT pg_advisory_xact_lock(${ROUTE_LOCK_CLASS}, ${int(slot)})`;
}

/**
 * Statement that waits until every session holding the node lease has a
 * router that saw the slot's freeze (the epoch its frozen record carries
 * here) — at most IDLE_LEASE_HOLDER_WAIT_MS for a session sitting idle, at
 * most `waitMs` for one at work — and ends the rest (see installNodeLease).
 * Nothing when the slot is not frozen here.
 */
export function settleNodeLeasesStatement(slot: number, waitMs: number): string {
  return `SELECT ended_pid, ended_application, ended_state FROM ${NODE_SCHEMA}.settle_route_leases(
  (SELECT s.epoch FROM ${NODE_SCHEMA}.slot_state s WHERE s.slot = ${int(slot)} AND s.state = 'frozen'), ${int(Math.max(0, Math.round(waitMs)))}, ${IDLE_LEASE_HOLDER_WAIT_MS})`;
}

/**
 * How long a fence waits for an idle node lease holder whose router has not
 * said it saw the freeze. A live router says so within a few ms of the
 * freeze, while the fence's replay wait runs; a stalled one's sessions sit
 * idle, and this bound is what a stalled router adds to a write pause.
 */
export const IDLE_LEASE_HOLDER_WAIT_MS = 25;

/** The sessions `settleNodeLeasesStatement` ended, from the results of the multi-statement query it ran in. */
export function endedNodeLeaseHolders(results: readonly pg.QueryResult[]): EndedBackend[] {
  const rows = results.flatMap((result) => result.rows as { ended_pid?: number; ended_application: string; ended_state: string }[]);
  return rows.filter((row) => row.ended_pid !== undefined)
    .map((row) => ({ pid: row.ended_pid!, applicationName: row.ended_application, state: row.ended_state, held: 'node lease of a router behind the freeze' }));
}


/** Undo of a freeze: the slot is served here again. A slot that moved on stays moved. */
export async function markSlotThawed(db: Queryable, slot: number, epoch: number): Promise<void> {
  // A node whose helpers predate the slot state (a fence left by an older reshard, removed by doctor) has nothing to thaw.
  const present = await db.query<{ present: boolean }>(`SELECT to_regclass('${NODE_SCHEMA}.slot_state') IS NOT NULL AS present`);
  if (!present.rows[0]?.present) return;
  await db.query(`UPDATE ${NODE_SCHEMA}.slot_state SET state = 'owned', epoch = $2, changed_at = now() WHERE slot = $1 AND state = 'frozen'`, [slot, epoch]);
}

/** Undo of an ATTACH on the target: the slot is the source's (a stale route here is redirected there). */
export async function markSlotNotAttached(db: pg.ClientBase, slot: number, owner: string, epoch: number, holdersWaitMs = ROUTE_HOLDERS_WAIT_MS_DEFAULT): Promise<void> {
  // Under the route lock like the switch: no routed transaction is open on leaves about to be detached.
  // A slot without a row here was never served here; the redirect keeps a stale route from reaching empty tables.
  await writeUnderRouteLock(db, [slot], [`${upsert(slot, 'moved', epoch, owner)} WHERE ${NODE_SCHEMA}.slot_state.state = 'owned'`], holdersWaitMs);
}

/**
 * Undo of an ATTACH of a slot no slot map has had yet (a split's high child
 * attached on another node before the split's switch): the node forgets it.
 * No router routes such a slot, so no route lock is needed.
 */
export async function forgetUnswitchedSlot(db: Queryable, slot: number): Promise<void> {
  await db.query(`DELETE FROM ${NODE_SCHEMA}.slot_state WHERE slot = $1 AND state = 'owned'`, [slot]);
}

export interface EndedBackend {
  pid: number;
  applicationName: string;
  state: string;
  /** What it held: the route lock or a lock on a leaf. */
  held: string;
}

/**
 * Ends the sessions that block the slots' fence or switch: routed
 * transactions holding the route check's lock on one of the slots, and sessions
 * holding a lock on one of `leafOids` that a fence's EXCLUSIVE lock waits
 * for. Each is told why (the application sees "terminating connection due to
 * administrator command"); their open transactions are rolled back.
 */
export async function endSlotBlockers(db: Queryable, slots: readonly number[], leafOids: readonly number[] = []): Promise<EndedBackend[]> {
  const result = await db.query<{ pid: number; application_name: string; state: string; held: string; ended: boolean }>(
    `WITH blockers AS (
       SELECT DISTINCT l.pid,
              CASE WHEN l.locktype = 'advisory' THEN 'route lock' ELSE 'lock on ' || l.relation::regclass::text END AS held
         FROM pg_locks l
        WHERE l.granted AND l.pid <> pg_backend_pid()
          AND ((l.locktype = 'advisory' AND l.classid = $1::bigint::oid AND l.objid = ANY ($2::bigint[]::oid[]) AND l.objsubid = 2)
            OR (l.locktype = 'relation' AND l.relation = ANY($3::oid[]) AND l.mode <> 'AccessShareLock')))
     SELECT b.pid, coalesce(a.application_name, '') AS application_name, coalesce(a.state, '') AS state, b.held,
            pg_terminate_backend(b.pid, 1000) AS ended
       FROM blockers b LEFT JOIN pg_stat_activity a ON a.pid = b.pid`,
    [ROUTE_LOCK_CLASS, slots, leafOids],
  );
  return result.rows.map((row) => ({ pid: row.pid, applicationName: row.application_name, state: row.state, held: row.held }));
}

/** Oids of the given relations that exist (leaves of a slot), for `endSlotBlockers`. */
export async function relationOids(db: Queryable, qualifiedNames: readonly string[]): Promise<number[]> {
  const result = await db.query<{ oid: string }>('SELECT to_regclass(name)::oid::bigint::text AS oid FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL', [qualifiedNames]);
  return result.rows.map((row) => Number(row.oid));
}

/**
 * The switch on the old owner: the slot moved to `owner` (kept after cleanup
 * as a tombstone, so a stale route is refused with a redirect, not served 0
 * rows). Waits for routed transactions still open on the slot at most
 * `holdersWaitMs`, then ends them. One round trip when nothing is open.
 */
export async function markSlotMoved(db: pg.ClientBase, slot: number, owner: string, epoch: number, holdersWaitMs = ROUTE_HOLDERS_WAIT_MS_DEFAULT): Promise<{ ended: EndedBackend[]; roundTrips: number }> {
  return markSlotsMoved(db, [slot], owner, epoch, holdersWaitMs);
}

/** `markSlotMoved` for several slots that switched together: one transaction, one round trip when nothing is open on them. */
export async function markSlotsMoved(db: pg.ClientBase, slots: readonly number[], owner: string, epoch: number, holdersWaitMs = ROUTE_HOLDERS_WAIT_MS_DEFAULT): Promise<{ ended: EndedBackend[]; roundTrips: number }> {
  return writeUnderRouteLock(db, slots, slots.map((slot) => upsert(slot, 'moved', epoch, owner)), holdersWaitMs);
}

/**
 * Runs `statements` (slot state changes) in a transaction holding the slots'
 * route locks exclusive: open routed work is waited for at most
 * `holdersWaitMs`, then ended. (Node lease holders were settled by the
 * slot's fence.)
 */
async function writeUnderRouteLock(db: pg.ClientBase, slots: readonly number[], statements: readonly string[], holdersWaitMs: number): Promise<{ ended: EndedBackend[]; roundTrips: number }> {
  // In the slots' order: two writers of overlapping slots take their route locks in the same order.
  const routeLocks = [...slots].sort((a, b) => a - b).map(routeLockStatement);
  const ended: EndedBackend[] = [];
  let roundTrips = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      roundTrips++;
      await db.query(['BEGIN', `SET LOCAL lock_timeout = '${Math.max(1, Math.round(holdersWaitMs))}ms'`, ...routeLocks, ...statements, 'COMMIT'].join(';\n'));
      return { ended, roundTrips };
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      if ((error as { code?: string }).code !== '55P03' || attempt >= 3) throw error;
      roundTrips += 2;
      ended.push(...await endSlotBlockers(db, slots));
    }
  }
}

/** This node's record of a slot, or undefined when it has none. */
export async function nodeSlotState(db: Queryable, slot: number): Promise<{ state: NodeSlotState; epoch: number; owner: string | null } | undefined> {
  const result = await db.query<{ state: NodeSlotState; epoch: string; owner: string | null }>(`SELECT state, epoch::text, owner FROM ${NODE_SCHEMA}.slot_state WHERE slot = $1`, [slot]);
  const row = result.rows[0];
  return row ? { state: row.state, epoch: Number(row.epoch), owner: row.owner } : undefined;
}
