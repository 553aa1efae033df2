import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { shardKeyTypeFromPostgres, type ShardKeyType } from '../core/hash.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import { DURABLE_COMMIT_OPTIONS, openClient } from '../plumbing/connectTo.js';
import type { Queryable } from '../plumbing/queryable.js';
import type { CopyGate } from './copyMeter.js';
import { copyStatements } from './copySlot.js';
import { FENCE_SQLSTATE } from './nodeHelpers.js';
import { byRecordSql } from './slotStats.js';

/**
 * What reshard does on the server that holds a table being adopted (a
 * separate server or a node of the cluster). Everything it creates there
 * besides the replication slot lives in the schema `reshard_adopt`, so
 * `forget-source` and rollback remove it whole.
 */
export const ADOPT_SOURCE_SCHEMA = 'reshard_adopt';
const FENCE_FUNCTION = 'source_fence';
const FENCE_TRIGGER = 'reshard_adopt_fence';
const FENCE_TRUNCATE_TRIGGER = 'reshard_adopt_fence_truncate';

/** PostgreSQL's HASH_PARTITION_SEED as a signed int8, and hash_combine64's constant: see src/core/hash.ts. */
const SEED_SQL = '8816678312871386365';
const COMBINE_SQL = '5305509591434766563';
const TWO_POW_64_SQL = '18446744073709551616';

const HASH_FUNCTION: Record<ShardKeyType, string> = {
  bigint: 'hashint8extended', integer: 'hashint4extended', text: 'hashtextextended', uuid: 'uuid_hash_extended',
};

/**
 * SQL for the slot of a one-column key, as PostgreSQL's hash partitioning
 * routes the row: with one column the row hash is `hash + 0x49a0f4dd15e5a8e3`
 * mod 2^64 (hash_combine64 from 0), and the slot is that, unsigned, mod M.
 * Built-in functions only, so it runs on a source that has none of reshard's.
 */
export function slotOfKeySql(keySql: string, keyType: ShardKeyType, modulus: number): string {
  const hash = `${HASH_FUNCTION[keyType]}(${keySql}, ${SEED_SQL})`;
  if ((modulus & (modulus - 1)) === 0) {
    // A power of two reads only the low bits: plain int8 arithmetic, no numeric (several times faster per row).
    const mask = BigInt(modulus - 1);
    return `(((${hash} & ${mask}) + ${BigInt(COMBINE_SQL) & mask}) & ${mask})::int`;
  }
  return `(mod(mod(${hash}::numeric + ${TWO_POW_64_SQL} + ${COMBINE_SQL}, ${TWO_POW_64_SQL}), ${modulus}))::int`;
}

/**
 * An order-independent checksum of rows `t` of `table`, summed exactly: each
 * row hashed by its columns' own hash functions where every column type
 * allows it (see node/slotStats.ts; decided once per statement), else its
 * text form. Both sides of an adoption have the same column types, so they
 * decide alike.
 */
function rowChecksumSql(table: { schema: string; name: string }): string {
  const byRecord = byRecordSql(quoteLiteral(quoteQualified(table.schema, table.name)));
  return `coalesce(sum(CASE WHEN ${byRecord} THEN hash_record_extended(t, 0) ELSE hashtextextended(t::text, 0) END::numeric), 0)::text`;
}

export interface SourceTableShape {
  /** Columns, NOT NULLs, plain defaults and the primary key, as `CREATE TABLE t ( <definition> )` takes them. */
  definition: string;
  keyType: ShardKeyType;
  rowsEstimate: number;
}

/**
 * The table's columns in order (types, NOT NULL, defaults that call no
 * sequence) and its primary key: what the sharded parent is created with.
 * Sequence defaults are left to the key design of adoption (item 5), not copied.
 */
export async function describeSourceTable(db: Queryable, schema: string, name: string, keyColumn: string): Promise<SourceTableShape> {
  const qualified = quoteQualified(schema, name);
  const found = await db.query<{ oid: number | null }>('SELECT to_regclass($1)::oid::int AS oid', [qualified]);
  const oid = found.rows[0]?.oid;
  if (oid === null || oid === undefined) {
    throw new ReshardError('not_found', `the source has no table ${schema}.${name}`, 'name a table that exists on every --from server (and --schema if it is not in public)');
  }
  const columns = await db.query<{ attname: string; type: string; notnull: boolean; default_sql: string | null }>(
    `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            CASE WHEN d.adbin IS NOT NULL AND a.attgenerated = '' AND pg_get_expr(d.adbin, d.adrelid) NOT LIKE '%nextval(%'
                 THEN pg_get_expr(d.adbin, d.adrelid) END AS default_sql
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid],
  );
  const key = columns.rows.find((column) => column.attname === keyColumn);
  if (!key) throw new ReshardError('bad_input', `the table ${schema}.${name} has no column "${keyColumn}"`, 'pass one of its columns as --key');
  const keyType = shardKeyTypeFromPostgres(key.type);
  if (!keyType) throw new ReshardError('unsupported', `shard key column "${keyColumn}" has type ${key.type}, which reshard cannot shard by`, 'use a bigint, integer, text or uuid key');
  const primaryKey = await db.query<{ definition: string }>(
    `SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c WHERE c.conrelid = $1 AND c.contype = 'p'`, [oid],
  );
  if (!primaryKey.rows[0]) throw new ReshardError('bad_input', `the table ${schema}.${name} has no primary key`, `add one that includes ${keyColumn}: ALTER TABLE ${qualified} ADD PRIMARY KEY (${quoteIdent(keyColumn)})`);
  const parts = columns.rows.map((column) =>
    `${quoteIdent(column.attname)} ${column.type}${column.notnull ? ' NOT NULL' : ''}${column.default_sql !== null ? ` DEFAULT ${column.default_sql}` : ''}`);
  parts.push(primaryKey.rows[0].definition);
  const estimate = await db.query<{ rows: string }>('SELECT greatest(reltuples, 0)::bigint::text AS rows FROM pg_class WHERE oid = $1', [oid]);
  return { definition: parts.join(', '), keyType, rowsEstimate: Number(estimate.rows[0]?.rows ?? 0) };
}

/**
 * Copies the rows of `slots` from the source table, as of the exported
 * snapshot, into `into` (a hash-partitioned parent on one owner, which routes
 * each row to its leaf): one binary COPY stream, the slot of each row computed
 * on the source. Returns the rows copied.
 */
export async function copySourceRowsAtSnapshot(
  sourceConnection: ConnectionSettings,
  ownerConnection: ConnectionSettings,
  snapshotName: string,
  table: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType; modulus: number },
  into: { schema: string; name: string },
  slots: readonly number[],
  onBytes: (bytes: number) => void,
  gate?: CopyGate,
): Promise<number> {
  if (slots.length === 0) return 0;
  const [readerOpened, writerOpened] = await Promise.allSettled([
    openClient(sourceConnection, 'reshard adopt copy', {}, 'the adopted table\'s source (copy)'),
    openClient(ownerConnection, 'reshard adopt copy', { options: DURABLE_COMMIT_OPTIONS }, 'an owner node (copy)'),
  ]);
  if (readerOpened.status === 'rejected' || writerOpened.status === 'rejected') {
    for (const opened of [readerOpened, writerOpened]) if (opened.status === 'fulfilled') await opened.value.end().catch(() => {});
    throw readerOpened.status === 'rejected' ? readerOpened.reason : (writerOpened as PromiseRejectedResult).reason;
  }
  const reader = readerOpened.value;
  const writer = writerOpened.value;
  try {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await reader.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
    const source = quoteQualified(table.schema, table.name);
    const target = quoteQualified(into.schema, into.name);
    const slotSql = slotOfKeySql(`t.${quoteIdent(table.keyColumn)}`, table.keyType, table.modulus);
    const copied = await copyStatements(reader, writer,
      `COPY (SELECT t.* FROM ONLY ${source} t WHERE ${slotSql} = ANY ('{${slots.join(',')}}'::int[])) TO STDOUT (FORMAT binary)`,
      `COPY ${target} FROM STDIN (FORMAT binary)`, target, onBytes, gate);
    await reader.query('COMMIT');
    return copied.rows;
  } finally {
    await Promise.all([reader.end().catch(() => {}), writer.end().catch(() => {})]);
  }
}

/** reshard's marker messages in a source's WAL (pg_logical_emit_message), as test_decoding prints their start. */
export const ADOPT_MARKER_PREFIX = 'reshard_adopt';

/**
 * Writes a marker into the source's WAL in a transaction of its own: once the
 * change stream shows it, every transaction that committed before this call
 * returned has been seen.
 */
export async function emitMarker(db: Queryable, marker: string): Promise<void> {
  await db.query('SELECT pg_logical_emit_message(true, $1, $2)', [ADOPT_MARKER_PREFIX, marker]);
}

/**
 * Up to `changesMax` lines of the adoption's logical slot (test_decoding),
 * whole transactions, without consuming them: the slot moves on only once
 * they are applied (`advanceChangeSlot` to the last COMMIT seen), so a crash
 * in between replays them. Not bounded by a WAL position: measured, a peek up
 * to `pg_current_wal_lsn()` followed by an advance to it skipped transactions.
 */
export async function peekChanges(db: Queryable, slotName: string, changesMax: number): Promise<{ lsn: string; data: string }[]> {
  const result = await db.query<{ lsn: string; data: string }>(
    `SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, $2, 'include-xids', '0', 'skip-empty-xacts', '1')`, [slotName, changesMax],
  );
  return result.rows;
}

export async function advanceChangeSlot(db: Queryable, slotName: string, lsn: string): Promise<void> {
  // Never behind where the slot already is (a resumed run may hold an older position): that would be an error.
  await db.query('SELECT pg_replication_slot_advance(slot_name, greatest($2::pg_lsn, confirmed_flush_lsn)) FROM pg_replication_slots WHERE slot_name = $1', [slotName, lsn]);
}

/** WAL bytes between the slot's confirmed position and now. */
export async function changeSlotLagBytes(db: Queryable, slotName: string): Promise<number | undefined> {
  const result = await db.query<{ lag: string | null }>(
    'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag FROM pg_replication_slots WHERE slot_name = $1', [slotName],
  );
  const lag = result.rows[0]?.lag;
  return lag === null || lag === undefined ? undefined : Number(lag);
}

export async function replicationSlotExists(db: Queryable, slotName: string): Promise<boolean> {
  const result = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
  return result.rows.length > 0;
}

/** The current rows of `keys` (text form), each as JSON, by key. */
export async function rowsByKey(db: Queryable, table: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType }, keys: readonly string[]): Promise<Map<string, unknown>> {
  if (keys.length === 0) return new Map();
  const key = quoteIdent(table.keyColumn);
  const result = await db.query<{ key: string; row: unknown }>(
    `SELECT t.${key}::text AS key, to_jsonb(t) AS row FROM ${quoteQualified(table.schema, table.name)} t WHERE t.${key} = ANY ($1::${table.keyType}[])`, [keys],
  );
  return new Map(result.rows.map((row) => [row.key, row.row]));
}

/** Per slot: rows and checksum of a plain (or partitioned: all its leaves) table. */
export async function statsBySlot(db: Queryable, table: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType }, modulus: number): Promise<Map<number, { rows: number; checksum: string }>> {
  // The text form of a row depends on these session settings; servers' defaults may differ (time zone above all).
  await db.query("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'");
  const result = await db.query<{ slot: number; rows: string; checksum: string }>(
    `SELECT ${slotOfKeySql(`t.${quoteIdent(table.keyColumn)}`, table.keyType, modulus)} AS slot, count(*)::text AS rows, ${rowChecksumSql(table)} AS checksum
       FROM ${quoteQualified(table.schema, table.name)} t GROUP BY 1`,
  );
  return new Map(result.rows.map((row) => [row.slot, { rows: Number(row.rows), checksum: row.checksum }]));
}

/** The keys (text form) of the rows in `slots`, for telling which keys two sources share. */
export async function keysInSlots(db: Queryable, table: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType }, modulus: number, slots: readonly number[]): Promise<string[]> {
  const key = quoteIdent(table.keyColumn);
  const result = await db.query<{ key: string }>(
    `SELECT t.${key}::text AS key FROM ${quoteQualified(table.schema, table.name)} t WHERE ${slotOfKeySql(`t.${key}`, table.keyType, modulus)} = ANY ($1::int[])`, [slots],
  );
  return result.rows.map((row) => row.key);
}

/**
 * Fences the old table against every write (row writes and TRUNCATE raise
 * reshard's SQLSTATE RSM01), in one transaction that first takes the table
 * IN EXCLUSIVE MODE (in-flight writers finish, new ones wait, then fail) and
 * reads the WAL position: past every write the table ever accepted.
 * Idempotent.
 */
export async function fenceSourceTable(db: pg.ClientBase, table: { schema: string; name: string }, lockTimeoutMs: number): Promise<string> {
  const qualified = quoteQualified(table.schema, table.name);
  const fence = quoteQualified(ADOPT_SOURCE_SCHEMA, FENCE_FUNCTION);
  try {
    const results = await db.query(`BEGIN;
SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))};
CREATE SCHEMA IF NOT EXISTS ${quoteIdent(ADOPT_SOURCE_SCHEMA)};
CREATE OR REPLACE FUNCTION ${fence}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'table %.% was adopted by reshard: write to the sharded table through the router', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = '${FENCE_SQLSTATE}', HINT = 'reshard table adopt switched it; reshard rollback would bring it back';
END
$fn$;
LOCK TABLE ${qualified} IN EXCLUSIVE MODE;
DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified};
DROP TRIGGER IF EXISTS ${FENCE_TRUNCATE_TRIGGER} ON ${qualified};
CREATE TRIGGER ${FENCE_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON ${qualified} FOR EACH ROW EXECUTE FUNCTION ${fence}();
CREATE TRIGGER ${FENCE_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON ${qualified} FOR EACH STATEMENT EXECUTE FUNCTION ${fence}();
SELECT pg_current_wal_lsn()::text AS lsn;
COMMIT`) as unknown as pg.QueryResult[];
    const lsnResult = results.find((result) => result.command === 'SELECT');
    return (lsnResult!.rows[0] as { lsn: string }).lsn;
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Takes the fence off (a table that has none is left as it is). */
export async function unfenceSourceTable(db: Queryable, table: { schema: string; name: string }): Promise<void> {
  const found = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [quoteQualified(table.schema, table.name)]);
  if (!found.rows[0]?.present) return;
  const qualified = quoteQualified(table.schema, table.name);
  await db.query(`DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified}; DROP TRIGGER IF EXISTS ${FENCE_TRUNCATE_TRIGGER} ON ${qualified}`);
}

export async function sourceTableIsFenced(db: Queryable, table: { schema: string; name: string }): Promise<boolean> {
  const result = await db.query<{ fenced: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2) AS fenced', [quoteQualified(table.schema, table.name), FENCE_TRIGGER],
  );
  return result.rows[0]?.fenced ?? false;
}

export async function tableExists(db: Queryable, table: { schema: string; name: string }): Promise<boolean> {
  const result = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [quoteQualified(table.schema, table.name)]);
  return result.rows[0]?.present ?? false;
}

/** Drops the fence function on a source (with the fence triggers that use it). */
export async function dropSourceFenceFunction(db: Queryable): Promise<void> {
  await db.query(`DROP FUNCTION IF EXISTS ${quoteQualified(ADOPT_SOURCE_SCHEMA, FENCE_FUNCTION)}() CASCADE`);
}

/**
 * Writes rows back into the old table while it is fenced (rollback): the
 * session runs as a replica, so the fence's triggers do not fire. Deletes
 * `keys` and inserts `rows` (JSON objects of the table's columns) in one transaction.
 */
export async function writeBackRows(db: pg.ClientBase, table: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType }, keys: readonly string[], rows: readonly unknown[]): Promise<void> {
  if (keys.length === 0) return;
  const qualified = quoteQualified(table.schema, table.name);
  await db.query('BEGIN');
  try {
    await db.query("SET LOCAL session_replication_role = 'replica'");
    await db.query(`DELETE FROM ONLY ${qualified} WHERE ${quoteIdent(table.keyColumn)} = ANY ($1::${table.keyType}[])`, [keys]);
    if (rows.length > 0) await db.query(`INSERT INTO ${qualified} SELECT * FROM jsonb_populate_recordset(NULL::${qualified}, $1::jsonb)`, [JSON.stringify(rows)]);
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Drops the old table (forget-source). */
export async function dropSourceTable(db: Queryable, table: { schema: string; name: string }): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${quoteQualified(table.schema, table.name)}`);
}
