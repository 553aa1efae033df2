import type pg from 'pg';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { ADOPT_SOURCE_SCHEMA } from './adoptSource.js';
import { byRecordSql } from './slotStats.js';

/**
 * The whole old table's row count and checksum kept as running sums on a
 * source of an adoption, so that the cutover's verification reads one tiny
 * sum per source instead of scanning the table inside the fence (issue 13).
 * The same scheme as the online mover's per-leaf sums (`slotRowSums.ts`),
 * for one plain table: an ALWAYS row trigger adds each change's count and
 * hash delta to `table_row_sums` in the writing transaction, then one
 * statement at one snapshot replaces the sums rows it sees by a `base` row
 * from a scan. The trigger is committed before that snapshot is taken
 * (CREATE TRIGGER waits for writers in flight), so every change the base does
 * not see adds its own row, which that snapshot does not see either: from
 * then on the sums equal a scan at every snapshot. Per slot is not needed
 * here: see `mover/adoptRowSums.ts` for why whole-table totals prove as much.
 *
 * Everything lives in the source's `reshard_adopt` schema, as the fence does
 * (`forget-source` and rollback remove it).
 */

const SUMS_TABLE = quoteQualified(ADOPT_SOURCE_SCHEMA, 'table_row_sums');
const SUMS_FUNCTION = quoteQualified(ADOPT_SOURCE_SCHEMA, 'sum_row_change');
const SUMS_TRUNCATE_FUNCTION = quoteQualified(ADOPT_SOURCE_SCHEMA, 'sum_row_change_truncate');
const SUMS_TRIGGER = 'reshard_adopt_row_sums';
const SUMS_TRUNCATE_TRIGGER = 'reshard_adopt_row_sums_truncate';

/** A source table's sums: exact only where `tracked` (trigger in place since the base). */
export interface SourceRowSums {
  tracked: boolean;
  rows: number;
  /** Sum of hash_record_extended(row, 0) over the rows, as decimal text. */
  checksum: string;
}

/** The sums' table and functions (idempotent; in a transaction of the caller's). */
function installStatements(): string[] {
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(ADOPT_SOURCE_SCHEMA)}`,
    `CREATE TABLE IF NOT EXISTS ${SUMS_TABLE} (tbl oid NOT NULL, rows bigint NOT NULL, hash_sum numeric NOT NULL, base boolean NOT NULL DEFAULT false)`,
    `CREATE INDEX IF NOT EXISTS table_row_sums_tbl ON ${SUMS_TABLE} (tbl)`,
    // SECURITY DEFINER: any role that writes the table adds its delta without a grant on reshard's schema.
    `CREATE OR REPLACE FUNCTION ${SUMS_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ${SUMS_TABLE} (tbl, rows, hash_sum) VALUES (TG_RELID, 1, hash_record_extended(NEW, 0));
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO ${SUMS_TABLE} (tbl, rows, hash_sum) VALUES (TG_RELID, 0, hash_record_extended(NEW, 0)::numeric - hash_record_extended(OLD, 0));
  ELSE
    INSERT INTO ${SUMS_TABLE} (tbl, rows, hash_sum) VALUES (TG_RELID, -1, -hash_record_extended(OLD, 0)::numeric);
  END IF;
  RETURN NULL;
END
$fn$`,
    // A TRUNCATE ends the sums (the verification then scans the table).
    `CREATE OR REPLACE FUNCTION ${SUMS_TRUNCATE_FUNCTION}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  DELETE FROM ${SUMS_TABLE} WHERE tbl = TG_RELID;
  RETURN NULL;
END
$fn$`,
  ];
}

/**
 * Starts (or restarts) the sums of the source table: the triggers (waiting
 * at most `lockTimeoutMs` for writers in flight; a lock that does not come
 * leaves the table untracked), then the base from one scan. A table whose
 * rows hash by their text form, or that is not a plain table, is left
 * untracked. Returns whether it is tracked. Outside the fence: the scan is
 * its cost.
 */
export async function trackSourceRows(db: pg.ClientBase, table: { schema: string; name: string }, lockTimeoutMs: number): Promise<boolean> {
  const qualified = quoteQualified(table.schema, table.name);
  const shape = await db.query<{ plain: boolean; by_record: boolean }>(
    `SELECT coalesce((SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass($1)), false) AS plain, ${byRecordSql('$1')} AS by_record`, [qualified]);
  if (!shape.rows[0]?.plain || !shape.rows[0].by_record) return false;
  try {
    // The table's lock first: a writer in flight whose (earlier) sums trigger adds a row must find the sums table
    // unlocked, or it waits for this transaction while this waits for it — a deadlock (seen on a resume after an undo
    // that could not end the sums).
    await db.query(['BEGIN', `SET LOCAL lock_timeout = '${Math.max(1, Math.round(lockTimeoutMs))}ms'`, `LOCK TABLE ${qualified} IN SHARE ROW EXCLUSIVE MODE`, ...installStatements(),
      `DELETE FROM ${SUMS_TABLE} WHERE tbl = ${quoteLiteral(qualified)}::regclass`,
      `CREATE OR REPLACE TRIGGER ${SUMS_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON ${qualified} FOR EACH ROW EXECUTE FUNCTION ${SUMS_FUNCTION}()`,
      `CREATE OR REPLACE TRIGGER ${SUMS_TRUNCATE_TRIGGER} AFTER TRUNCATE ON ${qualified} FOR EACH STATEMENT EXECUTE FUNCTION ${SUMS_TRUNCATE_FUNCTION}()`,
      `ALTER TABLE ${qualified} ENABLE ALWAYS TRIGGER ${SUMS_TRIGGER}`,
      `ALTER TABLE ${qualified} ENABLE ALWAYS TRIGGER ${SUMS_TRUNCATE_TRIGGER}`,
      'COMMIT'].join(';\n'));
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    if ((error as { code?: string }).code === '55P03') return false;
    throw error;
  }
  // One statement, one snapshot: the sums rows it sees are replaced by the scan they summed up to.
  await db.query(`WITH gone AS (DELETE FROM ${SUMS_TABLE} WHERE tbl = ${quoteLiteral(qualified)}::regclass RETURNING 1)
INSERT INTO ${SUMS_TABLE} (tbl, rows, hash_sum, base)
SELECT ${quoteLiteral(qualified)}::regclass, count(*), coalesce(sum(hash_record_extended(t, 0)), 0), true FROM ONLY ${qualified} t
 WHERE (SELECT count(*) FROM gone) >= 0`);
  return true;
}

/**
 * One SELECT of the source table's sums (columns tracked, rows, checksum),
 * for a table whose sums' table exists: also sent inside the fence's
 * transaction (`fenceSourceTable`), so the cutover reads them without a
 * round trip of its own.
 */
export function sourceRowSumsSql(table: { schema: string; name: string }): string {
  const qualified = quoteLiteral(quoteQualified(table.schema, table.name));
  return `SELECT bool_or(s.base) AND (SELECT count(*) = 2 FROM pg_trigger g WHERE g.tgrelid = to_regclass(${qualified}) AND g.tgname IN (${quoteLiteral(SUMS_TRIGGER)}, ${quoteLiteral(SUMS_TRUNCATE_TRIGGER)}) AND g.tgenabled = 'A') AS tracked,
            coalesce(sum(s.rows), 0)::text AS rows, coalesce(sum(s.hash_sum), 0)::text AS checksum
       FROM ${SUMS_TABLE} s WHERE s.tbl = to_regclass(${qualified})`;
}

/** The source table's sums: exact only where `tracked`. */
export async function sourceRowSums(db: Queryable, table: { schema: string; name: string }): Promise<SourceRowSums> {
  const qualified = quoteQualified(table.schema, table.name);
  const present = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS present', [qualified, SUMS_TABLE]);
  if (!present.rows[0]?.present) return { tracked: false, rows: 0, checksum: '0' };
  const result = await db.query<{ tracked: boolean | null; rows: string; checksum: string }>(sourceRowSumsSql(table));
  const row = result.rows[0]!;
  return { tracked: row.tracked === true, rows: Number(row.rows), checksum: row.checksum };
}

/**
 * Ends the sums of the source table under any of `names` (the table is
 * renamed at the switch where a node holds it): its triggers and sums rows
 * go; the sums' table and functions too once no table uses them. Idempotent.
 */
export async function untrackSourceRows(db: pg.ClientBase, names: readonly { schema: string; name: string }[]): Promise<void> {
  const installed = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [SUMS_TABLE]);
  if (!installed.rows[0]?.present) return;
  // Only relations that carry the triggers: a DROP TRIGGER IF EXISTS would lock the live sharded parent that took the name.
  const carriers = await db.query<{ relation: string }>(
    `SELECT DISTINCT g.tgrelid::regclass::text AS relation FROM pg_trigger g
      WHERE g.tgname IN ($2, $3) AND g.tgrelid IN (SELECT to_regclass(name) FROM unnest($1::text[]) AS name)`,
    [names.map((table) => quoteQualified(table.schema, table.name)), SUMS_TRIGGER, SUMS_TRUNCATE_TRIGGER]);
  for (const { relation } of carriers.rows) {
    try {
      await db.query(['BEGIN', `DROP TRIGGER IF EXISTS ${SUMS_TRIGGER} ON ${relation}`, `DROP TRIGGER IF EXISTS ${SUMS_TRUNCATE_TRIGGER} ON ${relation}`,
        `DELETE FROM ${SUMS_TABLE} WHERE tbl = ${quoteLiteral(relation)}::regclass`, 'COMMIT'].join(';\n'));
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }
  await db.query(`DELETE FROM ${SUMS_TABLE} WHERE tbl IN (SELECT to_regclass(name) FROM unnest($1::text[]) AS name)`, [names.map((table) => quoteQualified(table.schema, table.name))]);
  await db.query(`DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgfoid IN ('${SUMS_FUNCTION}'::regproc, '${SUMS_TRUNCATE_FUNCTION}'::regproc)) THEN
    DROP TABLE ${SUMS_TABLE};
    DROP FUNCTION ${SUMS_FUNCTION}();
    DROP FUNCTION ${SUMS_TRUNCATE_FUNCTION}();
  END IF;
END
$do$`);
}

/** Drops the sums' table and functions on a source, with every trigger that uses them (rollback, forget-source). */
export async function dropSourceRowSums(db: Queryable): Promise<void> {
  await db.query(`DROP FUNCTION IF EXISTS ${SUMS_FUNCTION}() CASCADE; DROP FUNCTION IF EXISTS ${SUMS_TRUNCATE_FUNCTION}() CASCADE; DROP TABLE IF EXISTS ${SUMS_TABLE}`);
}

/** Whether anything of the sums is left on a source (for tests and leftovers checks). */
export async function sourceRowSumsLeft(db: Queryable): Promise<boolean> {
  const result = await db.query<{ left: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgname IN ($2, $3)) AS left`, [SUMS_TABLE, SUMS_TRIGGER, SUMS_TRUNCATE_TRIGGER]);
  return result.rows[0]?.left ?? false;
}
