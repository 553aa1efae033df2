import type pg from 'pg';
import { assert } from '../core/assert.js';
import { quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { leafName, leafNamePattern } from './leafName.js';
import { NODE_SCHEMA, REPLAY_WAIT_FUNCTION } from './nodeHelpers.js';
import { endedNodeLeaseHolders, endSlotBlockers, markSlotThawed, relationOids, ROUTE_HOLDERS_WAIT_MS_DEFAULT, routeLockStatement, settleNodeLeasesStatement, slotFrozenStatement, type EndedBackend } from './slotState.js';
import type { SlotTable } from './slotPartitions.js';

const FENCE_ROW_TRIGGER = 'reshard_fence';
/** The session setting that carries the fence's WAL position from its transaction to the replay wait after it. */
const FENCE_LSN_SETTING = 'reshard.fence_lsn';
const FENCE_TRUNCATE_TRIGGER = 'reshard_fence_truncate';

/** How long a fence may wait for in-flight writers on the leaf before giving up. */
export const FENCE_LOCK_TIMEOUT_MS = 10_000;

export interface FenceOptions {
  /** The catalog epoch of the freeze, recorded in the node's slot state. */
  epoch?: number;
  /** Longest the fence waits for writers on the leaves (sessions that bypass the route check). */
  lockTimeoutMs?: number;
  /**
   * Longest the fence waits for open transactions on the slot (routed ones
   * holding the route check's lock, and writers holding a lock on a leaf)
   * before it ends them and fences again: a stalled client cannot hold a freeze.
   */
  holdersWaitMs?: number;
  /**
   * After the fence commits, in the same round trip: wait on the source, at
   * most `waitMs`, until `subscription` has replayed past the fence's position
   * (what the final sync waits for; only a read, so taking it early is safe).
   */
  replayWait?: { subscription: string; waitMs: number };
}

export interface FenceResult {
  /** A WAL position past every write the slot received. */
  lsn: string;
  /** Sessions ended because they held the freeze past `holdersWaitMs`. */
  ended: EndedBackend[];
  /** Sequential round trips to the source this fence took. */
  roundTrips: number;
  /** With `replayWait`: the subscription had replayed past `lsn` when the fence returned. */
  replayed?: boolean;
  /** Where the last attempt's round trip waited. */
  waitsMs?: FenceWaits;
}

/**
 * Rejects every write to the slot's leaves (all tables, one transaction) with
 * reshard's SQLSTATE, also from writers that bypass routers, and records the
 * slot `frozen` in the node's slot state, which the route check reads. The
 * route lock (exclusive) waits for every routed transaction that passed the
 * check on this slot, and the EXCLUSIVE lock for in-flight writers on these
 * leaves only, so when this returns no work on the slot is pending and new
 * routed work is refused (RSM01); reads of unrouted sessions and every other
 * slot go on. One round trip when nothing holds the slot.
 */
export async function fenceSlot(db: pg.ClientBase, tables: readonly SlotTable[], slot: number, modulus: number, options: FenceOptions = {}): Promise<FenceResult> {
  return fenceSlots(db, tables, [slot], modulus, options);
}

/**
 * `fenceSlot` for several slots frozen together (one epoch): every slot's
 * route lock and every leaf in one transaction, one round trip when nothing
 * holds them, and one replay wait and one settling of node leases for all.
 */
export async function fenceSlots(db: pg.ClientBase, tables: readonly SlotTable[], slots: readonly number[], modulus: number, options: FenceOptions = {}): Promise<FenceResult> {
  assert(slots.length > 0, 'a fence names at least one slot');
  // In the slots' order: route locks of overlapping fences are taken in the same order.
  const ordered = [...slots].sort((a, b) => a - b);
  const leaves = ordered.flatMap((slot) => tables.map((table) => quoteQualified(table.schema, leafName(table.name, slot, modulus))));
  const lockTimeoutMs = options.lockTimeoutMs ?? FENCE_LOCK_TIMEOUT_MS;
  const holdersWaitMs = Math.min(options.holdersWaitMs ?? ROUTE_HOLDERS_WAIT_MS_DEFAULT, lockTimeoutMs);
  const ended: EndedBackend[] = [];
  let roundTrips = 0;
  for (let attempt = 1; ; attempt++) {
    // After ending the blockers once, the second attempt waits its full bound (a new writer is not ended twice).
    const waitMs = attempt === 1 ? holdersWaitMs : Math.max(1, lockTimeoutMs - holdersWaitMs);
    try {
      roundTrips++;
      const fenced = await fenceOnce(db, leaves, ordered, options.epoch ?? 0, waitMs, holdersWaitMs, options.replayWait);
      ended.push(...fenced.endedLeaseHolders);
      return { lsn: fenced.lsn, ended, roundTrips, waitsMs: fenced.waitsMs, ...(fenced.replayed === undefined ? {} : { replayed: fenced.replayed }) };
    } catch (error) {
      const lockTimedOut = (error as { code?: string }).code === '55P03';
      if (!lockTimedOut || attempt >= 2) throw error;
      roundTrips += 2;
      ended.push(...await endSlotBlockers(db, ordered, await relationOids(db, leaves)));
    }
  }
}

async function fenceOnce(
  db: pg.ClientBase, leaves: readonly string[], slots: readonly number[], epoch: number, lockTimeoutMs: number, holdersWaitMs: number, replayWait: FenceOptions['replayWait'],
): Promise<{ lsn: string; replayed?: boolean; endedLeaseHolders: EndedBackend[]; waitsMs: FenceWaits }> {
  // One round trip: the freeze's length is the write pause clients see.
  const statements = [
    'BEGIN',
    `SET LOCAL lock_timeout = '${Math.max(1, Math.round(lockTimeoutMs))}ms'`,
    // The commit must be flushed at once: a walsender only sends flushed WAL,
    // and the final sync waits for the subscriber to confirm this position.
    'SET LOCAL synchronous_commit = on',
    // First the routed transactions (they may hold the route lock without touching a leaf yet), then the
    // writers. Node lease holders come after the commit (below).
    ...slots.map(routeLockStatement),
    `LOCK TABLE ${leaves.join(', ')} IN EXCLUSIVE MODE`,
    // Every write to these leaves committed before the lock was granted, so
    // its WAL lies before this position (kept in the session for the replay wait after COMMIT).
    `SELECT position AS lsn, set_config('${FENCE_LSN_SETTING}', position, false), extract(epoch FROM clock_timestamp() - now()) * 1000 AS locked_ms FROM (SELECT pg_current_wal_insert_lsn()::text AS position) AS now`,
    ...leaves.flatMap((leaf) => [
      `CREATE OR REPLACE TRIGGER ${FENCE_ROW_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON ${leaf} FOR EACH ROW EXECUTE FUNCTION ${NODE_SCHEMA}.reject_write()`,
      `CREATE OR REPLACE TRIGGER ${FENCE_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON ${leaf} FOR EACH STATEMENT EXECUTE FUNCTION ${NODE_SCHEMA}.reject_write()`,
    ]),
    ...slots.map((slot) => slotFrozenStatement(slot, epoch)),
    'COMMIT',
    // Its own implicit transaction: only a read of the walsender's position, taken after the commit is flushed.
    `SELECT extract(epoch FROM clock_timestamp()) * 1000 AS committed_at_ms`,
    ...(replayWait ? [`SELECT ${REPLAY_WAIT_FUNCTION}(${quoteLiteral(replayWait.subscription)}, current_setting('${FENCE_LSN_SETTING}')::pg_lsn, ${Math.max(0, Math.round(replayWait.waitMs))}) AS replayed, extract(epoch FROM clock_timestamp()) * 1000 AS replayed_at_ms`] : []),
    // Once the slots read frozen here (no lease is granted to a router older than that), every node lease holder
    // whose router has not said it saw the freeze is waited for, then ended: before the switch, so that no
    // statement sent unchecked on a map older than the freeze reaches the slots after it. Live routers say so
    // within a few ms of the freeze, while the replay wait above runs, so this usually waits for nothing.
    // The slots share the freeze's epoch: one settling covers them all.
    settleNodeLeasesStatement(slots[0]!, holdersWaitMs),
    `SELECT extract(epoch FROM clock_timestamp()) * 1000 AS settled_at_ms`,
  ];
  try {
    const results = (await db.query(statements.join(';\n'))) as unknown as pg.QueryResult<{ lsn?: string; replayed?: boolean }>[];
    const lsn = results.find((result) => result.rows[0]?.lsn !== undefined)?.rows[0]?.lsn;
    if (lsn === undefined) throw new Error('the fence transaction returned no WAL position');
    const replayed = results.find((result) => typeof result.rows[0]?.replayed === 'boolean')?.rows[0]?.replayed;
    return { lsn, endedLeaseHolders: endedNodeLeaseHolders(results), ...(replayed === undefined ? {} : { replayed }), waitsMs: fenceWaits(results) };
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Where a fence's round trip waited, ms, from the source's clock: for the journal and tuning. */
export interface FenceWaits {
  /** From BEGIN until the route locks and the leaves' locks were granted. */
  locks: number;
  /** The replay wait after the commit. */
  replay: number;
  /** The settling of node lease holders. */
  settle: number;
}

function fenceWaits(results: readonly pg.QueryResult[]): FenceWaits {
  const field = (name: string): number | undefined => {
    const value = results.find((result) => result.rows[0]?.[name] !== undefined)?.rows[0]?.[name] as string | number | undefined;
    return value === undefined ? undefined : Number(value);
  };
  const committed = field('committed_at_ms') ?? 0;
  const replayed = field('replayed_at_ms') ?? committed;
  const settled = field('settled_at_ms') ?? replayed;
  return { locks: Math.round(field('locked_ms') ?? 0), replay: Math.round(replayed - committed), settle: Math.round(settled - replayed) };
}

/**
 * Undo of the fence: the triggers go, and the node serves the slot again
 * (`frozen` → `owned`; a slot recorded as moved stays moved). Idempotent; a
 * leaf that no longer exists needs none.
 */
export async function unfenceSlot(db: Queryable, tables: readonly SlotTable[], slot: number, modulus: number, epoch = 0): Promise<void> {
  for (const table of tables) await unfenceSlotLeaf(db, table, slot, modulus);
  await markSlotThawed(db, slot, epoch);
}

async function unfenceSlotLeaf(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const leafQualified = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  const exists = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [leafQualified]);
  if (!exists.rows[0]?.present) return;
  await db.query(`DROP TRIGGER IF EXISTS ${FENCE_ROW_TRIGGER} ON ${leafQualified}`);
  await db.query(`DROP TRIGGER IF EXISTS ${FENCE_TRUNCATE_TRIGGER} ON ${leafQualified}`);
}

export async function slotLeafIsFenced(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<boolean> {
  const result = await db.query<{ fenced: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2) AS fenced',
    [quoteQualified(table.schema, leafName(table.name, slot, modulus)), FENCE_ROW_TRIGGER],
  );
  return result.rows[0]?.fenced ?? false;
}

/** Leaves of `table` (attached or not) that carry a fence trigger: writes to them fail with RSM01. */
export async function fencedLeaves(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<{ leaf: string; attached: boolean }[]> {
  const result = await db.query<{ relname: string; attached: boolean }>(
    `SELECT c.relname, c.relispartition AS attached
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname ~ $2
        AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname IN ($3, $4))
      ORDER BY c.relname`,
    [table.schema, leafNamePattern(table.name), FENCE_ROW_TRIGGER, FENCE_TRUNCATE_TRIGGER],
  );
  return result.rows.map((row) => ({ leaf: row.relname, attached: row.attached }));
}
