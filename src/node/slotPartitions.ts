import type pg from 'pg';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import { slotsText } from '../core/slotsText.js';
import type { Queryable } from '../plumbing/queryable.js';
import { leafName, leafNamePattern } from './leafName.js';
import { parentOid } from './parentTable.js';
import { errorFields, log } from '../plumbing/log.js';
import { startWaitLog } from '../plumbing/waitLog.js';

const logger = log('node');
import { slotOwnedSinceStatement } from './slotState.js';

/** The parts of a sharded table that partition DDL needs. */
export interface SlotTable {
  schema: string;
  name: string;
  shardKey: readonly string[];
}

/** Advisory lock class serialising detaches of one parent's leaves on a node. */
const DETACH_LOCK_CLASS = 0x7273_6474; // "rsdt"

/** Name of the CHECK that proves a staged leaf's rows belong to its slot. */
export const SLOT_BOUND_CONSTRAINT = 'reshard_slot_bound';

function boundClause(modulus: number, slot: number): string {
  return `FOR VALUES WITH (MODULUS ${modulus}, REMAINDER ${slot})`;
}

/** Runs DDL statements as one transaction in one round trip (a commit each would cost a WAL flush each). */
export async function runInOneTransaction(db: pg.ClientBase, statements: readonly string[]): Promise<void> {
  if (statements.length === 0) return;
  try {
    await db.query(['BEGIN', ...statements, 'COMMIT'].join(';\n'));
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Creates and attaches the partitions of `slots` (a node's initial share). */
export async function createSlotPartitions(db: Queryable, table: SlotTable, slots: readonly number[], modulus: number, boundModulusOf: (slot: number) => number = () => modulus): Promise<void> {
  if (slots.length === 0) return;
  const parent = quoteQualified(table.schema, table.name);
  const statements = slots.map(
    (slot) => `CREATE TABLE ${quoteQualified(table.schema, leafName(table.name, slot, modulus))} PARTITION OF ${parent} ${boundClause(boundModulusOf(slot), slot)};`,
  );
  await db.query(statements.join('\n'));
}

export interface LeafState {
  exists: boolean;
  attached: boolean;
  detachPending: boolean;
}

export async function leafState(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<LeafState> {
  const result = await db.query<{ attached: boolean | null; detach_pending: boolean | null; exists: boolean }>(
    `SELECT c.oid IS NOT NULL AS exists,
            i.inhrelid IS NOT NULL AS attached,
            coalesce(i.inhdetachpending, false) AS detach_pending
       FROM (SELECT to_regclass($1) AS oid) c
       LEFT JOIN pg_inherits i ON i.inhrelid = c.oid`,
    [quoteQualified(table.schema, leafName(table.name, slot, modulus))],
  );
  const row = result.rows[0]!;
  return { exists: row.exists, attached: row.attached ?? false, detachPending: row.detach_pending ?? false };
}

/**
 * The tables whose leaf of the slot is not attached on this node, in one
 * round trip, and whether the session is inside a transaction (where its own
 * uncommitted ATTACH would look attached to it and to nobody else).
 */
export async function unattachedSlotLeaves<T extends SlotTable>(db: Queryable, tables: readonly T[], slot: number, modulus: number): Promise<{ inTransaction: boolean; unattached: T[] }> {
  const result = await db.query<UnattachedRow>(unattachedSlotLeavesSql(tables, slot, modulus));
  const row = result.rows[0]!;
  return { inTransaction: row.in_transaction, unattached: row.unattached.map((position) => tables[Number(position) - 1]!) };
}

interface UnattachedRow { in_transaction: boolean; unattached: string[] }

function unattachedSlotLeavesSql(tables: readonly SlotTable[], slot: number, modulus: number): string {
  const names = tables.map((table) => quoteLiteral(quoteQualified(table.schema, leafName(table.name, slot, modulus))));
  // No parameters: the simple protocol runs the statement in one message, so outside a transaction
  // now() (its start) equals statement_timestamp(); the extended protocol's messages would set them apart.
  return `SELECT now() <> statement_timestamp() AS in_transaction,
            coalesce(array_agg(l.position::text ORDER BY l.position) FILTER (WHERE NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = to_regclass(l.name))), '{}') AS unattached
       FROM unnest(ARRAY[${names.join(', ')}]::text[]) WITH ORDINALITY AS l(name, position)`;
}

/**
 * Prepare on the target: the slots' leaves as standalone tables shaped like
 * the parent, each with a CHECK that its rows belong to its slot, so that the
 * later ATTACH is proven by the constraint and does not scan. All slots in one
 * transaction; idempotent: leaves that exist are left as they are.
 */
export async function stageSlotLeaves(db: pg.ClientBase, tables: readonly SlotTable[], slots: readonly number[], modulus: number, boundModulusOf: (slot: number) => number = () => modulus): Promise<void> {
  const statements: string[] = [];
  for (const table of tables) {
    const oid = await parentOid(db, table);
    const names = slots.map((slot) => quoteQualified(table.schema, leafName(table.name, slot, modulus)));
    const existing = await db.query<{ present: boolean }>('SELECT to_regclass(name) IS NOT NULL AS present FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) ORDER BY i', [names]);
    const keys = table.shardKey.map(quoteIdent).join(', ');
    slots.forEach((slot, index) => {
      if (existing.rows[index]?.present) return;
      statements.push(
        `CREATE TABLE ${names[index]} (LIKE ${quoteQualified(table.schema, table.name)} INCLUDING ALL)`,
        `ALTER TABLE ${names[index]} ADD CONSTRAINT ${SLOT_BOUND_CONSTRAINT} CHECK (satisfies_hash_partition(${oid}::oid, ${boundModulusOf(slot)}, ${slot}, ${keys}))`,
      );
    });
  }
  await runInOneTransaction(db, statements);
}

/** Undo of staging: drops the standalone leaf (never an attached one). */
export async function dropStagedSlotLeaf(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const state = await leafState(db, table, slot, modulus);
  if (!state.exists || state.attached) return;
  await db.query(`DROP TABLE ${quoteQualified(table.schema, leafName(table.name, slot, modulus))}`);
}

/** Empties a staged (unattached) leaf so a copy can be repeated from scratch. */
export async function truncateStagedSlotLeaf(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const state = await leafState(db, table, slot, modulus);
  if (!state.exists || state.attached) return;
  await db.query(`TRUNCATE ${quoteQualified(table.schema, leafName(table.name, slot, modulus))}`);
}

/** How long an ATTACH may keep trying to lock the parents in all before it gives up (the caller then retries the cutover). */
export const ATTACH_LOCK_TIMEOUT_MS = 10_000;

/**
 * Longest one attempt queues for the parents' lock. While it queues, new
 * queries on that node's parents queue behind it, so a long query there
 * (a report, a vacuum) must cost other slots at most this much per attempt:
 * the attempt gives way and tries again shortly.
 */
export const ATTACH_LOCK_ATTEMPT_MS_MAX = 200;

/**
 * ATTACH the slot's staged leaf of every table in one transaction, one round
 * trip, with the parents locked ACCESS EXCLUSIVE for its few milliseconds;
 * with `ownedEpoch`, the node's slot state says `owned` in that transaction.
 * Idempotent.
 *
 * Why the strong lock (ATTACH alone needs only SHARE UPDATE EXCLUSIVE):
 * PostgreSQL builds a parent's partition descriptor lazily, and a backend
 * that is building it while an ATTACH commits can take in the ATTACH's
 * invalidation halfway and then keep the descriptor it read before the
 * commit — that session misses the new partition (an UPDATE matches 0 rows,
 * an INSERT finds "no partition") until the parent is invalidated again.
 * Reproduced on PostgreSQL 15 with cold backends planning against a parent
 * while partitions were attached (46 of 164 checks missed; 0 of 230 with this
 * lock). Locked, no session plans against the parents while the ATTACH
 * commits: queries wait for it, then see the partition.
 */
export async function attachSlot(db: pg.ClientBase, tables: readonly SlotTable[], slot: number, modulus: number, lockTimeoutMs = ATTACH_LOCK_TIMEOUT_MS, ownedEpoch?: number): Promise<{ inTransaction: boolean; unattached: SlotTable[] }> {
  const after = await attachSlots(db, tables, [slot], modulus, lockTimeoutMs, ownedEpoch);
  return { inTransaction: after.inTransaction, unattached: after.unattached.map((leaf) => leaf.table) };
}

/**
 * `attachSlot` for several slots cut over together: every leaf of every slot
 * in one transaction under one lock of the parents, one round trip. Returns
 * the leaves still unattached after the COMMIT (none when it succeeded).
 */
export async function attachSlots(db: pg.ClientBase, tables: readonly SlotTable[], slots: readonly number[], modulus: number, lockTimeoutMs = ATTACH_LOCK_TIMEOUT_MS, ownedEpoch?: number): Promise<{ inTransaction: boolean; unattached: { slot: number; table: SlotTable }[]; lockAttempts: number }> {
  // Always in the tables' order: two cutovers into one node lock the same parents in the same order.
  const parents = tables.map((table) => quoteQualified(table.schema, table.name));
  const leafOf = (table: SlotTable, slot: number): string => quoteQualified(table.schema, leafName(table.name, slot, modulus));
  const unattachedSql = (leaf: string): string => `NOT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = to_regclass(${quoteLiteral(leaf)}))`;
  // One round trip: the leaves still standalone are attached (the parents locked only if there is one), the node's
  // slot state says 'owned' in that transaction (the route check reads it), and after the COMMIT the same
  // message looks again (`unattachedSlotLeaves`): what the switch requires, proven committed.
  const block = `DO $attach$
DECLARE
  bound int;
BEGIN
  IF ${slots.flatMap((slot) => tables.map((table) => unattachedSql(leafOf(table, slot)))).join(' OR ')} THEN
    LOCK TABLE ${parents.join(', ')} IN ACCESS EXCLUSIVE MODE;
${slots.flatMap((slot) => tables.map((table, index) => `    IF ${unattachedSql(leafOf(table, slot))} THEN
      -- The modulus the staged leaf's CHECK proves (a split slot's is not the cluster's).
      SELECT substring(pg_get_constraintdef(k.oid) from 'satisfies_hash_partition\\([^,]*, (\\d+),')::int INTO bound
        FROM pg_constraint k WHERE k.conrelid = to_regclass(${quoteLiteral(leafOf(table, slot))}) AND k.conname = '${SLOT_BOUND_CONSTRAINT}';
      EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES WITH (MODULUS %s, REMAINDER %s)', ${quoteLiteral(parents[index]!)}, ${quoteLiteral(leafOf(table, slot))}, coalesce(bound, ${modulus}), ${slot});
    END IF;`)).join('\n')}
${ownedEpoch === undefined ? '' : slots.map((slot) => `    ${slotOwnedSinceStatement(slot, ownedEpoch)};`).join('\n')}
  END IF;
END
$attach$`;
  const what = `the ACCESS EXCLUSIVE lock on ${parents.join(', ')} to attach ${slotsText(slots)}`;
  let lockAttempts = 0;
  const results = await underParentLock(db, what, [block, 'COMMIT', ...slots.map((slot) => unattachedSlotLeavesSql(tables, slot, modulus))], lockTimeoutMs, { slots },
    (attempts) => { lockAttempts = attempts; });
  const checks = (results as unknown as pg.QueryResult<UnattachedRow>[]).slice(-slots.length).map((result) => result.rows[0]!);
  return {
    inTransaction: checks.some((check) => check.in_transaction),
    unattached: checks.flatMap((check, index) => check.unattached.map((position) => ({ slot: slots[index]!, table: tables[Number(position) - 1]! }))),
    lockAttempts,
  };
}

/**
 * Runs `statements` (which take a parent's ACCESS EXCLUSIVE lock and end with
 * the COMMIT, or follow it) in one transaction, one round trip per attempt,
 * each attempt queueing at most `ATTACH_LOCK_ATTEMPT_MS_MAX` for the lock so
 * that queries queued behind it wait at most that much; attempts go on until
 * `lockTimeoutMs` has passed in all. Returns the query's result.
 */
async function underParentLock(db: pg.ClientBase, what: string, statements: readonly string[], lockTimeoutMs: number, fields: Record<string, unknown>,
  onAttempts: (attempts: number) => void = () => {}): Promise<unknown> {
  const deadline = performance.now() + lockTimeoutMs;
  const waitLog = startWaitLog(logger, what, lockTimeoutMs, fields);
  for (let attempt = 1; ; attempt++) {
    const attemptMs = Math.max(1, Math.round(Math.min(ATTACH_LOCK_ATTEMPT_MS_MAX, deadline - performance.now())));
    try {
      const results = await db.query(['BEGIN', `SET LOCAL lock_timeout = '${attemptMs}ms'`, ...statements].join(';\n'));
      waitLog.end('done', { attempts: attempt });
      onAttempts(attempt);
      return results;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      const lockTimedOut = (error as { code?: string }).code === '55P03';
      if (!lockTimedOut || performance.now() + 20 >= deadline) {
        waitLog.end(lockTimedOut ? 'timeout' : 'failed', { attempts: attempt, ...errorFields(error) });
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Undo of attach, before the switch: back to a standalone staged leaf. */
export async function detachSlotLeafForUndo(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const state = await leafState(db, table, slot, modulus);
  if (!state.attached) return;
  const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  await db.query(`ALTER TABLE ${quoteQualified(table.schema, table.name)} DETACH PARTITION ${leaf}`);
}

/** Leaves one cleanup transaction locks at most: a serving leaf's writes wait for that transaction. */
const LEAVES_PER_CLEANUP_TRANSACTION_MAX = 8;

/**
 * After ATTACH, the slot-bound CHECK is only a per-row cost on the new owner:
 * dropped for every slot given, a few leaves per transaction (each leaf's
 * ACCESS EXCLUSIVE lock held until that commit, one WAL flush per group).
 * `alongside(slot)`: statements for the same transaction and the same lock on
 * that slot's leaf. Leaves that do not exist are passed over. Idempotent.
 */
export async function dropSlotBoundConstraints(db: pg.ClientBase, table: SlotTable, slots: readonly number[], modulus: number, alongside: (slot: number) => readonly string[] = () => []): Promise<void> {
  const leafOfSlot = new Map(slots.map((slot) => [slot, quoteQualified(table.schema, leafName(table.name, slot, modulus))]));
  const existing = await db.query<{ present: boolean }>('SELECT to_regclass(name) IS NOT NULL AS present FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) ORDER BY i', [[...leafOfSlot.values()]]);
  const present = slots.filter((_, index) => existing.rows[index]?.present);
  for (let first = 0; first < present.length; first += LEAVES_PER_CLEANUP_TRANSACTION_MAX) {
    await runInOneTransaction(db, present.slice(first, first + LEAVES_PER_CLEANUP_TRANSACTION_MAX).flatMap((slot) => [
      `ALTER TABLE ${leafOfSlot.get(slot)!} DROP CONSTRAINT IF EXISTS ${SLOT_BOUND_CONSTRAINT}`, ...alongside(slot),
    ]));
  }
}

/**
 * Cleanup on the old owner: DETACH … CONCURRENTLY (never a plain DETACH, which
 * takes an ACCESS EXCLUSIVE lock on the parent), then DROP. Idempotent, and
 * finishes a detach that an earlier crash left pending.
 */
export async function detachAndDropSlotLeaf(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const parent = quoteQualified(table.schema, table.name);
  const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  // PostgreSQL allows one pending detach per parent: concurrent cleanups on
  // this node take turns (a session lock, as DETACH CONCURRENTLY cannot run
  // in a transaction).
  await db.query('SELECT pg_advisory_lock($1::int, (SELECT to_regclass($2)::oid::int))', [DETACH_LOCK_CLASS, parent]);
  try {
    const state = await leafState(db, table, slot, modulus);
    // DETACH … CONCURRENTLY waits for every transaction that uses the parent: a long one holds cleanup, so say so.
    const waitLog = startWaitLog(logger, `DETACH of ${leaf} from ${parent} and its DROP (they wait for every open transaction that uses ${parent})`, undefined, { slot });
    try {
      if (state.detachPending) {
        await db.query(`ALTER TABLE ${parent} DETACH PARTITION ${leaf} FINALIZE`);
      } else if (state.attached) {
        await db.query(`ALTER TABLE ${parent} DETACH PARTITION ${leaf} CONCURRENTLY`);
      }
      await db.query(`DROP TABLE IF EXISTS ${leaf}`);
      waitLog.end('done');
    } catch (error) {
      waitLog.end('failed', errorFields(error));
      throw error;
    }
  } finally {
    await db.query('SELECT pg_advisory_unlock($1::int, (SELECT to_regclass($2)::oid::int))', [DETACH_LOCK_CLASS, parent]);
  }
}

/**
 * Cleanup on the old owner, for many slots of one table: their leaves
 * dropped a few at a time, each group in one transaction under the parent's
 * ACCESS EXCLUSIVE lock, taken as the attach takes it (bounded attempts, so
 * queries queue behind it for at most one attempt; the lock also keeps any
 * session from building the parent's partition descriptor while the drop
 * commits). One lock for several leaves instead of two waits for every open
 * transaction per leaf (DETACH … CONCURRENTLY, then DROP). The leaves'
 * slots are not served here any more (switched, tombstoned): only stale
 * routes touch them, and those are refused. A leaf an older
 * cleanup left pending detach is finished as `detachAndDropSlotLeaf` does,
 * and so is a group whose lock does not come within `DROP_LOCK_TRYING_MS`.
 * Idempotent.
 */
export async function dropSwitchedSlotLeaves(db: pg.ClientBase, table: SlotTable, slots: readonly number[], modulus: number): Promise<void> {
  const parent = quoteQualified(table.schema, table.name);
  const leafOfSlot = new Map(slots.map((slot) => [slot, quoteQualified(table.schema, leafName(table.name, slot, modulus))]));
  // Every leaf's state in one round trip: gone already, pending detach, or there.
  const states = await db.query<{ exists: boolean; detach_pending: boolean }>(
    `SELECT to_regclass(n.name) IS NOT NULL AS exists,
            coalesce((SELECT i.inhdetachpending FROM pg_inherits i WHERE i.inhrelid = to_regclass(n.name)), false) AS detach_pending
       FROM unnest($1::text[]) WITH ORDINALITY AS n(name, position) ORDER BY n.position`,
    [[...leafOfSlot.values()]],
  );
  const present: number[] = [];
  for (const [index, slot] of slots.entries()) {
    const state = states.rows[index]!;
    if (state.detach_pending) await detachAndDropSlotLeaf(db, table, slot, modulus);
    else if (state.exists) present.push(slot);
  }
  for (let first = 0; first < present.length; first += LEAVES_PER_CLEANUP_TRANSACTION_MAX) {
    const group = present.slice(first, first + LEAVES_PER_CLEANUP_TRANSACTION_MAX);
    const leaves = group.map((slot) => leafOfSlot.get(slot)!).join(', ');
    try {
      await underParentLock(db, `the ACCESS EXCLUSIVE lock on ${parent} to drop ${leaves}`,
        [`LOCK TABLE ${parent} IN ACCESS EXCLUSIVE MODE`, `DROP TABLE IF EXISTS ${leaves}`, 'COMMIT'], DROP_LOCK_TRYING_MS, { table: table.name });
    } catch (error) {
      if ((error as { code?: string }).code !== '55P03') throw error;
      // A long transaction holds the parent (a report, a vacuum): attempts would stall its other slots' queries
      // again and again. The group goes leaf by leaf without that lock instead, waiting as long as it must.
      for (const slot of group) await detachAndDropSlotLeaf(db, table, slot, modulus);
    }
  }
}

/** How long a cleanup's drop tries for the parent's lock before it detaches concurrently instead (which waits without stalling anyone). */
const DROP_LOCK_TRYING_MS = 1_000;

/** Slots whose leaves are attached to the parent on this node (the node's view of ownership). */
export async function attachedSlots(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<Map<number, string>> {
  const result = await db.query<{ relname: string; bound: string }>(
    `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1) AND NOT i.inhdetachpending`,
    [quoteQualified(table.schema, table.name)],
  );
  const slots = new Map<number, string>();
  for (const row of result.rows) {
    const match = /remainder (\d+)/i.exec(row.bound);
    if (match) slots.set(Number(match[1]), row.relname);
  }
  return slots;
}

/**
 * Tables named like `table`'s leaves that are not partitions of anything:
 * staged leaves of a move in flight, or leftovers of one that did not finish
 * (or a leaf detached by hand).
 */
export async function standaloneLeaves(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<string[]> {
  const result = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ $2 AND NOT c.relispartition
      ORDER BY c.relname`,
    [table.schema, leafNamePattern(table.name)],
  );
  return result.rows.map((row) => row.relname);
}
