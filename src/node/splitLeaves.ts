import type pg from 'pg';
import { assertIdentifierFits, quoteIdent, quoteQualified } from '../core/identifier.js';
import { errorFields, log } from '../plumbing/log.js';
import type { Queryable } from '../plumbing/queryable.js';
import { startWaitLog } from '../plumbing/waitLog.js';
import { leafName } from './leafName.js';
import { NODE_SCHEMA } from './nodeHelpers.js';
import { parentOid } from './parentTable.js';
import { ATTACH_LOCK_ATTEMPT_MS_MAX, ATTACH_LOCK_TIMEOUT_MS, runInOneTransaction, SLOT_BOUND_CONSTRAINT, type SlotTable } from './slotPartitions.js';
import { slotFrozenStatement, slotOwnedSinceStatement, slotOwnedStatement } from './slotState.js';

const logger = log('node');

/**
 * A split or a merge on one node replaces attached leaves by staged ones:
 * a split, the leaf of slot r (modulus m) by two children (2m, r) and
 * (2m, r + m); a merge, those two by one (m, r). The lowest child keeps its
 * parent's id, so its leaf keeps the parent's name: it is staged under a
 * suffixed name and renamed in the exchange, where the replaced leaf takes a
 * suffixed name of its own until cleanup drops it.
 */
export interface LeafExchange {
  /** The cluster's modulus (leaf names are padded to its digits). */
  clusterModulus: number;
  /** Leaves attached now, replaced by the exchange: slot ids. */
  replaced: readonly number[];
  /** Leaves attached by the exchange: slot id and its modulus. */
  replacements: readonly { slot: number; modulus: number }[];
  /** 'split' or 'merge': names the staged and the retired leaves. */
  kind: 'split' | 'merge';
}

/** The name a replacement leaf is staged under (its final name, unless a replaced leaf has that name now). */
export function stagedLeafName(table: Pick<SlotTable, 'name'>, exchange: LeafExchange, slot: number): string {
  const name = leafName(table.name, slot, exchange.clusterModulus);
  if (!exchange.replaced.includes(slot)) return name;
  const staged = `${name}_${exchange.kind}`;
  assertIdentifierFits(staged, 'staged partition name');
  return staged;
}

/** The name a replaced leaf has after the exchange, until cleanup drops it. */
export function retiredLeafName(table: Pick<SlotTable, 'name'>, exchange: LeafExchange, slot: number): string {
  const retired = `${leafName(table.name, slot, exchange.clusterModulus)}_pre${exchange.kind}`;
  assertIdentifierFits(retired, 'retired partition name');
  return retired;
}

/**
 * The replacement leaves as standalone tables shaped like the parent, each
 * with the CHECK that proves its bound, so the ATTACH of the exchange does not
 * scan. One transaction; idempotent.
 */
export async function stageReplacementLeaves(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange): Promise<void> {
  const statements: string[] = [];
  for (const table of tables) {
    const oid = await parentOid(db, table);
    const keys = table.shardKey.map(quoteIdent).join(', ');
    for (const { slot, modulus } of exchange.replacements) {
      const name = quoteQualified(table.schema, stagedLeafName(table, exchange, slot));
      const present = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [name]);
      if (present.rows[0]?.present) continue;
      statements.push(
        `CREATE TABLE ${name} (LIKE ${quoteQualified(table.schema, table.name)} INCLUDING ALL)`,
        `ALTER TABLE ${name} ADD CONSTRAINT ${SLOT_BOUND_CONSTRAINT} CHECK (satisfies_hash_partition(${oid}::oid, ${modulus}, ${slot}, ${keys}))`,
      );
    }
  }
  await runInOneTransaction(db, statements);
}

/** Undo of staging: drops the staged leaves that are not attached. Idempotent. */
export async function dropReplacementLeaves(db: Queryable, tables: readonly SlotTable[], exchange: LeafExchange): Promise<void> {
  for (const table of tables) {
    for (const { slot } of exchange.replacements) {
      const name = quoteQualified(table.schema, stagedLeafName(table, exchange, slot));
      const state = await db.query<{ standalone: boolean }>('SELECT NOT c.relispartition AS standalone FROM pg_class c WHERE c.oid = to_regclass($1)', [name]);
      if (state.rows[0]?.standalone) await db.query(`DROP TABLE ${name}`);
    }
  }
}

/**
 * Copies the replaced leaves' rows into the staged leaves, each row to the
 * one whose bound it satisfies — on the node, no network. One transaction
 * (the staged leaves are emptied first, so a repeat starts over). Writes to
 * the replaced leaves go on meanwhile: the keys they change are recorded
 * (`exchangeChangedKeys.ts`, started before) and caught up after.
 */
export async function copyIntoReplacementLeaves(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange): Promise<{ rows: number }> {
  const statements: string[] = [];
  for (const table of tables) {
    const oid = await parentOid(db, table);
    const keys = table.shardKey.map(quoteIdent).join(', ');
    const columns = (await storedColumns(db, oid)).join(', ');
    const sources = exchange.replaced.map((slot) => quoteQualified(table.schema, leafName(table.name, slot, exchange.clusterModulus)));
    for (const { slot, modulus } of exchange.replacements) {
      const target = quoteQualified(table.schema, stagedLeafName(table, exchange, slot));
      statements.push(`TRUNCATE ${target}`);
      for (const source of sources) {
        statements.push(`INSERT INTO ${target} (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM ONLY ${source} WHERE satisfies_hash_partition(${oid}::oid, ${modulus}, ${slot}, ${keys})`);
      }
    }
  }
  const results = await (async () => {
    try {
      return (await db.query(['BEGIN', ...statements, 'COMMIT'].join(';\n'))) as unknown as pg.QueryResult[];
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      throw error;
    }
  })();
  const rows = results.filter((result) => result.command === 'INSERT').reduce((total, result) => total + (result.rowCount ?? 0), 0);
  return { rows };
}

/** The parent's stored columns (not generated), quoted, in order: what a copy between leaves names. */
export async function storedColumns(db: Queryable, oid: number): Promise<string[]> {
  const result = await db.query<{ name: string }>(
    "SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
    [oid],
  );
  return result.rows.map((row) => quoteIdent(row.name));
}

/** Whether the exchange is done on this node (the first table's first replaced leaf is retired). */
export async function leavesExchanged(db: Queryable, tables: readonly SlotTable[], exchange: LeafExchange): Promise<boolean> {
  const table = tables[0];
  if (!table) return true;
  const retired = quoteQualified(table.schema, retiredLeafName(table, exchange, exchange.replaced[0]!));
  const result = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [retired]);
  return result.rows[0]?.present ?? false;
}

/**
 * The exchange, in one node transaction with the parents locked ACCESS
 * EXCLUSIVE for its few milliseconds (plain DETACH needs that lock anyway, and
 * ATTACH needs it for the partition descriptor's sake, see `attachSlot`):
 * DETACH the replaced leaves, rename them retired, rename the staged leaves to
 * their names, ATTACH them (proven by their CHECK: no scan), and record every
 * slot of the exchange `owned` in the node's slot state at `epoch` (a merged-
 * away slot's keys are served by the merged leaf on this node; with
 * `refuseOlderRoutes`, from `epoch` on only). Atomic, so a crash leaves either side whole. Each attempt waits
 * at most ATTACH_LOCK_ATTEMPT_MS_MAX for the lock, then gives way and retries
 * within `lockTimeoutMs`. Idempotent.
 */
export async function exchangeLeaves(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange, epoch: number, lockTimeoutMs = ATTACH_LOCK_TIMEOUT_MS,
  options: { refuseOlderRoutes?: boolean } = {}): Promise<{ attempts: number; lockedMs: number }> {
  if (await leavesExchanged(db, tables, exchange)) return { attempts: 0, lockedMs: 0 };
  const statements: string[] = [];
  for (const table of tables) {
    const parent = quoteQualified(table.schema, table.name);
    for (const slot of exchange.replaced) {
      const leaf = leafName(table.name, slot, exchange.clusterModulus);
      statements.push(
        `ALTER TABLE ${parent} DETACH PARTITION ${quoteQualified(table.schema, leaf)}`,
        `ALTER TABLE ${quoteQualified(table.schema, leaf)} RENAME TO ${quoteIdent(retiredLeafName(table, exchange, slot))}`,
      );
    }
    for (const { slot, modulus } of exchange.replacements) {
      const staged = stagedLeafName(table, exchange, slot);
      const final = leafName(table.name, slot, exchange.clusterModulus);
      if (staged !== final) statements.push(`ALTER TABLE ${quoteQualified(table.schema, staged)} RENAME TO ${quoteIdent(final)}`);
      statements.push(`ALTER TABLE ${parent} ATTACH PARTITION ${quoteQualified(table.schema, final)} FOR VALUES WITH (MODULUS ${modulus}, REMAINDER ${slot})`);
    }
  }
  const kept = new Set(exchange.replacements.map(({ slot }) => slot));
  const slotStates = [
    // A split whose high child is on another node (`split --to`): from here on this node has no leaf for the high
    // half's keys, so work routed at a map older than `epoch` (which routed them here, as slot r) is refused.
    ...exchange.replacements.map(({ slot }) => (options.refuseOlderRoutes ? slotOwnedSinceStatement(slot, epoch) : slotOwnedStatement(slot, epoch))),
    // A merged-away slot stays served here (its keys are in the merged leaf) until cleanup bars older maps from it.
    ...exchange.replaced.filter((slot) => !kept.has(slot)).map((slot) => slotOwnedStatement(slot, epoch)),
  ];
  return underParentLock(db, tables, [...statements, ...slotStates], lockTimeoutMs, `exchange slot leaves (${exchange.kind})`);
}

/**
 * Undo of the exchange: the replacements detached and staged again under
 * their staged names, the retired leaves renamed back and attached with their
 * old bounds (validated by a scan: undo is rare). The node's slot state is
 * the caller's (the freeze's undo thaws it). Idempotent.
 */
export async function undoLeafExchange(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange, replacedModulus: number, frozenEpoch: number, lockTimeoutMs = ATTACH_LOCK_TIMEOUT_MS): Promise<void> {
  if (!(await leavesExchanged(db, tables, exchange))) return;
  const statements: string[] = [];
  for (const table of tables) {
    const parent = quoteQualified(table.schema, table.name);
    for (const { slot } of exchange.replacements) {
      const final = leafName(table.name, slot, exchange.clusterModulus);
      const staged = stagedLeafName(table, exchange, slot);
      statements.push(`ALTER TABLE ${parent} DETACH PARTITION ${quoteQualified(table.schema, final)}`);
      if (staged !== final) statements.push(`ALTER TABLE ${quoteQualified(table.schema, final)} RENAME TO ${quoteIdent(staged)}`);
    }
    for (const slot of exchange.replaced) {
      const leaf = leafName(table.name, slot, exchange.clusterModulus);
      statements.push(
        `ALTER TABLE ${quoteQualified(table.schema, retiredLeafName(table, exchange, slot))} RENAME TO ${quoteIdent(leaf)}`,
        `ALTER TABLE ${parent} ATTACH PARTITION ${quoteQualified(table.schema, leaf)} FOR VALUES WITH (MODULUS ${replacedModulus}, REMAINDER ${slot})`,
      );
    }
  }
  // The node's slot state as before the exchange: the replaced slots frozen (the freeze's undo thaws them), the added ones unknown here.
  const replaced = new Set(exchange.replaced);
  const slotStates = [
    ...exchange.replaced.map((slot) => slotFrozenStatement(slot, frozenEpoch)),
    ...exchange.replacements.filter(({ slot }) => !replaced.has(slot)).map(({ slot }) => `DELETE FROM ${NODE_SCHEMA}.slot_state WHERE slot = ${slot}`),
  ];
  await underParentLock(db, tables, [...statements, ...slotStates], lockTimeoutMs, `undo of a slot leaf exchange (${exchange.kind})`);
}

/**
 * After the switch: work routed at an epoch before `switchEpoch` is refused
 * on every slot of the exchange (RSM01, "route the key again"). A router that
 * missed a split would otherwise send keys of r + m as slot r, which is right
 * only while r + m stays on this node. Idempotent; the bar only rises.
 */
export async function barOlderRoutes(db: Queryable, exchange: LeafExchange, switchEpoch: number): Promise<void> {
  const slots = [...new Set([...exchange.replaced, ...exchange.replacements.map(({ slot }) => slot)])];
  await db.query(
    `UPDATE ${NODE_SCHEMA}.slot_state SET min_epoch = greatest(coalesce(min_epoch, 0), $2), changed_at = now() WHERE slot = ANY($1::int[])`,
    [slots, switchEpoch],
  );
}

/**
 * Cleanup after the switch: the retired leaves dropped (standalone since the
 * exchange), the new leaves' bound CHECK dropped, each in one transaction
 * with `alongside` statements for that leaf (it locks the leaf anyway).
 * Idempotent.
 */
export async function dropRetiredLeaves(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange,
  alongside: (table: SlotTable, slot: number) => readonly string[] = () => []): Promise<void> {
  for (const table of tables) {
    for (const slot of exchange.replaced) {
      await db.query(`DROP TABLE IF EXISTS ${quoteQualified(table.schema, retiredLeafName(table, exchange, slot))}`);
    }
    for (const { slot } of exchange.replacements) {
      const leaf = quoteQualified(table.schema, leafName(table.name, slot, exchange.clusterModulus));
      const present = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [leaf]);
      if (!present.rows[0]?.present) continue;
      // The bound CHECK only costs per row once the leaf is attached.
      await runInOneTransaction(db, [...alongside(table, slot), `ALTER TABLE ${leaf} DROP CONSTRAINT IF EXISTS ${SLOT_BOUND_CONSTRAINT}`]);
    }
  }
}

async function underParentLock(db: pg.ClientBase, tables: readonly SlotTable[], statements: readonly string[], lockTimeoutMs: number, what: string): Promise<{ attempts: number; lockedMs: number }> {
  // Always in the tables' order: two operations on one node lock the same parents in the same order.
  const parents = tables.map((table) => quoteQualified(table.schema, table.name));
  const deadline = performance.now() + lockTimeoutMs;
  const waitLog = startWaitLog(logger, `the ACCESS EXCLUSIVE lock on ${parents.join(', ')} to ${what}`, lockTimeoutMs, {});
  for (let attempt = 1; ; attempt++) {
    const attemptMs = Math.max(1, Math.round(Math.min(ATTACH_LOCK_ATTEMPT_MS_MAX, deadline - performance.now())));
    const startedAt = performance.now();
    try {
      await runInOneTransaction(db, [`SET LOCAL lock_timeout = '${attemptMs}ms'`, `LOCK TABLE ${parents.join(', ')} IN ACCESS EXCLUSIVE MODE`, ...statements]);
      waitLog.end('done', { attempts: attempt });
      return { attempts: attempt, lockedMs: performance.now() - startedAt };
    } catch (error) {
      const lockTimedOut = (error as { code?: string }).code === '55P03';
      if (!lockTimedOut || performance.now() + 20 >= deadline) {
        waitLog.end(lockTimedOut ? 'timeout' : 'failed', { attempts: attempt, ...errorFields(error) });
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/**
 * Tables a split or a merge leaves between its steps (staged `…_split`,
 * `…_merge`, retired `…_presplit`, `…_premerge`): leftovers once none runs.
 */
export async function exchangeLeftovers(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<string[]> {
  const result = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ $2 ORDER BY c.relname`,
    [table.schema, `^${table.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_s[0-9]+_(pre)?(split|merge)$`],
  );
  return result.rows.map((row) => row.relname);
}

/** Each attached leaf's bound on this node: slot (remainder) → its modulus. */
export async function attachedSlotModuli(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<Map<number, number>> {
  const result = await db.query<{ bound: string }>(
    `SELECT pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass($1) AND NOT i.inhdetachpending`,
    [quoteQualified(table.schema, table.name)],
  );
  const moduli = new Map<number, number>();
  for (const row of result.rows) {
    const match = /modulus (\d+), remainder (\d+)/i.exec(row.bound);
    if (match) moduli.set(Number(match[2]), Number(match[1]));
  }
  return moduli;
}
