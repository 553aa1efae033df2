import type pg from 'pg';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { leafName } from './leafName.js';
import { NODE_SCHEMA } from './nodeHelpers.js';
import { parentOid } from './parentTable.js';
import type { SlotTable } from './slotPartitions.js';
import { stagedLeafName, storedColumns, type LeafExchange } from './splitLeaves.js';

/**
 * The keys changed in the leaves a split or a merge replaces, while their
 * rows are copied into the staged leaves with writes going on (issue 14): a
 * node cannot subscribe to its own tables, so the change stream is a row
 * trigger on each replaced leaf that adds, in the writing transaction, the
 * primary key of every row it inserts, updates or deletes to
 * `reshard_node.changed_keys` (inserts only: writers never wait on each other).
 *
 * A catch-up round, in one REPEATABLE READ transaction (one snapshot for all
 * its statements): every staged leaf's rows of the keys it sees recorded are
 * deleted, the replaced leaves' rows of those keys that satisfy the staged
 * leaf's bound are inserted again, and the recorded keys it saw are deleted.
 * A change it did not see committed later with its own key row, which that
 * snapshot does not see either, so it stays for the next round. A round is
 * idempotent (a key's rows are read afresh), so a repeat after a crash is
 * harmless. With the trigger committed before the bulk copy began (CREATE
 * TRIGGER waits for writers in flight), the staged leaves equal the replaced
 * leaves' rows by bound after any round taken once nothing writes them (the
 * freeze).
 */

const CHANGED_KEYS_TABLE = `${NODE_SCHEMA}.changed_keys`;
const CHANGED_KEYS_FUNCTION = `${NODE_SCHEMA}.record_changed_key`;
export const CHANGED_KEYS_TRIGGER = 'reshard_changed_keys';
/** One attempt at the replaced leaf's lock to create or drop the trigger, then it gives way to writers and retries. */
const TRIGGER_LOCK_ATTEMPT_MS = 200;

/** The table and the trigger function. Idempotent. */
export async function installChangedKeys(db: Queryable): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS ${CHANGED_KEYS_TABLE} (leaf oid NOT NULL, key jsonb NOT NULL)`);
  await db.query(`CREATE INDEX IF NOT EXISTS changed_keys_leaf ON ${CHANGED_KEYS_TABLE} (leaf)`);
  // The trigger's arguments name the primary key's columns. SECURITY DEFINER: any role that writes the leaf records its keys.
  await db.query(`CREATE OR REPLACE FUNCTION ${CHANGED_KEYS_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  old_key jsonb;
  new_key jsonb;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    SELECT jsonb_object_agg(k, to_jsonb(OLD) -> k) INTO old_key FROM unnest(TG_ARGV) AS k;
    INSERT INTO ${CHANGED_KEYS_TABLE} (leaf, key) VALUES (TG_RELID, old_key);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    SELECT jsonb_object_agg(k, to_jsonb(NEW) -> k) INTO new_key FROM unnest(TG_ARGV) AS k;
    IF old_key IS DISTINCT FROM new_key THEN
      INSERT INTO ${CHANGED_KEYS_TABLE} (leaf, key) VALUES (TG_RELID, new_key);
    END IF;
  END IF;
  RETURN NULL;
END
$fn$`);
}

/** The primary key's columns of a table's parent, in index order. */
export async function primaryKeyColumns(db: Queryable, table: SlotTable): Promise<string[]> {
  const result = await db.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.position`,
    [quoteQualified(table.schema, table.name)]);
  if (result.rows.length === 0) throw new Error(`${table.schema}.${table.name} has no primary key on this node`);
  return result.rows.map((row) => row.name);
}

function replacedLeaves(table: SlotTable, exchange: LeafExchange): string[] {
  return exchange.replaced.map((slot) => quoteQualified(table.schema, leafName(table.name, slot, exchange.clusterModulus)));
}

/**
 * SQL: the distinct primary keys recorded for the table's replaced leaves,
 * as rows of the (quoted) `keyColumns`, for a round's transaction.
 */
export function recordedKeysSql(table: SlotTable, exchange: LeafExchange, keyColumns: readonly string[]): string {
  const leafOids = replacedLeaves(table, exchange).map((leaf) => `${quoteLiteral(leaf)}::regclass::oid`).join(', ');
  return `(SELECT DISTINCT ${keyColumns.map((column) => `r.${column}`).join(', ')} FROM ${CHANGED_KEYS_TABLE} c CROSS JOIN LATERAL jsonb_populate_record(NULL::${quoteQualified(table.schema, table.name)}, c.key) r WHERE c.leaf IN (${leafOids}))`;
}

/**
 * Starts recording the keys changed in the replaced leaves: the trigger
 * (firing always) on each, where missing. CREATE TRIGGER waits for the
 * leaf's writers in flight and holds theirs for its few milliseconds; an
 * attempt gives way after 200 ms and retries within `lockTimeoutMs`.
 * Idempotent.
 */
export async function captureChangedKeys(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange, lockTimeoutMs: number): Promise<void> {
  await installChangedKeys(db);
  for (const table of tables) {
    const columns = (await primaryKeyColumns(db, table)).map(quoteLiteral).join(', ');
    for (const leaf of replacedLeaves(table, exchange)) {
      const present = await db.query<{ present: boolean }>(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2 AND tgenabled = 'A') AS present", [leaf, CHANGED_KEYS_TRIGGER]);
      if (present.rows[0]?.present) continue;
      await withLockAttempts(db, lockTimeoutMs, [
        `CREATE OR REPLACE TRIGGER ${CHANGED_KEYS_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON ${leaf} FOR EACH ROW EXECUTE FUNCTION ${CHANGED_KEYS_FUNCTION}(${columns})`,
        `ALTER TABLE ${leaf} ENABLE ALWAYS TRIGGER ${CHANGED_KEYS_TRIGGER}`,
      ]);
    }
  }
}

/**
 * Ends the recording on the replaced leaves that are still under their names
 * (an undo before the exchange): the trigger and the recorded keys go. After
 * the exchange the retired leaves keep the trigger until cleanup drops them
 * (see `forgetChangedKeys`). Idempotent.
 */
export async function endChangedKeys(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange, lockTimeoutMs: number): Promise<void> {
  // A prepare that stopped before it installed the table left no trigger and no key either.
  const installed = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [CHANGED_KEYS_TABLE]);
  if (!installed.rows[0]?.present) return;
  for (const table of tables) {
    for (const leaf of replacedLeaves(table, exchange)) {
      const state = await db.query<{ present: boolean; triggered: boolean }>(
        'SELECT to_regclass($1) IS NOT NULL AS present, EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2) AS triggered', [leaf, CHANGED_KEYS_TRIGGER]);
      if (!state.rows[0]?.present) continue;
      if (state.rows[0].triggered) await withLockAttempts(db, lockTimeoutMs, [`DROP TRIGGER IF EXISTS ${CHANGED_KEYS_TRIGGER} ON ${leaf}`]);
      await db.query(`DELETE FROM ${CHANGED_KEYS_TABLE} WHERE leaf = ${quoteLiteral(leaf)}::regclass`);
    }
  }
}

/** The recorded keys of leaves given by name (a retired leaf, before cleanup drops it with its trigger): deleted. Idempotent. */
export async function forgetChangedKeys(db: Queryable, leaves: readonly string[]): Promise<void> {
  await db.query(`DELETE FROM ${CHANGED_KEYS_TABLE} WHERE leaf = ANY (SELECT to_regclass(name) FROM unnest($1::text[]) AS name)`, [leaves]);
}

/**
 * The statements of one catch-up round (see the top of this file), for one
 * REPEATABLE READ transaction; the last one's row count is the recorded
 * changes it took.
 */
export async function catchUpStatements(db: Queryable, tables: readonly SlotTable[], exchange: LeafExchange): Promise<string[]> {
  const statements: string[] = [];
  const allLeaves: string[] = [];
  for (const table of tables) {
    const oid = await parentOid(db, table);
    const keyColumns = (await primaryKeyColumns(db, table)).map(quoteIdent);
    const shardKey = table.shardKey.map((column) => `l.${quoteIdent(column)}`).join(', ');
    const columns = await storedColumns(db, oid);
    const sources = replacedLeaves(table, exchange);
    allLeaves.push(...sources);
    const keys = recordedKeysSql(table, exchange, keyColumns);
    const matches = (alias: string): string => keyColumns.map((column) => `${alias}.${column} = k.${column}`).join(' AND ');
    for (const { slot, modulus } of exchange.replacements) {
      const staged = quoteQualified(table.schema, stagedLeafName(table, exchange, slot));
      statements.push(`DELETE FROM ${staged} s USING ${keys} k WHERE ${matches('s')}`);
      for (const source of sources) {
        statements.push(`INSERT INTO ${staged} (${columns.join(', ')}) OVERRIDING SYSTEM VALUE SELECT ${columns.map((column) => `l.${column}`).join(', ')}
  FROM ONLY ${source} l JOIN ${keys} k ON ${matches('l')} WHERE satisfies_hash_partition(${oid}::oid, ${modulus}, ${slot}, ${shardKey})`);
      }
    }
  }
  statements.push(`DELETE FROM ${CHANGED_KEYS_TABLE} WHERE leaf IN (${allLeaves.map((leaf) => `${quoteLiteral(leaf)}::regclass::oid`).join(', ')})`);
  return statements;
}

/**
 * One catch-up round (see the top of this file), one round trip; `after`
 * are statements run once it committed, in the same message (the sums that
 * verify it). Returns the recorded changes it took and what `after` returned.
 */
export async function catchUpChangedKeys(db: pg.ClientBase, statements: readonly string[], after: readonly string[] = []): Promise<{ changes: number; after: pg.QueryResult[] }> {
  let results: pg.QueryResult[];
  try {
    results = (await db.query(['BEGIN ISOLATION LEVEL REPEATABLE READ', ...statements, 'COMMIT', ...after].join(';\n'))) as unknown as pg.QueryResult[];
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
  // BEGIN, the statements, COMMIT, then `after`.
  return { changes: results[statements.length]?.rowCount ?? 0, after: results.slice(statements.length + 2) };
}

async function withLockAttempts(db: pg.ClientBase, lockTimeoutMs: number, statements: readonly string[]): Promise<void> {
  const deadline = performance.now() + lockTimeoutMs;
  for (;;) {
    const attemptMs = Math.max(1, Math.round(Math.min(TRIGGER_LOCK_ATTEMPT_MS, deadline - performance.now())));
    try {
      await db.query(['BEGIN', `SET LOCAL lock_timeout = '${attemptMs}ms'`, ...statements, 'COMMIT'].join(';\n'));
      return;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      if ((error as { code?: string }).code !== '55P03' || performance.now() + 20 >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
