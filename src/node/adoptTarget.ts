import type pg from 'pg';
import type { ShardKeyType } from '../core/hash.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { ADOPTED_TABLE_FENCE_TRIGGER } from './adoptedTableCheck.js';
import { leafName } from './leafName.js';
import { FENCE_SQLSTATE } from './nodeHelpers.js';
import { createParentTable } from './parentTable.js';

/**
 * What an adoption does on each node of the cluster: the sharded parent
 * under its staged name with the leaves of the slots the node owns, changes
 * applied by key, the renames of the cutover, and — from the switch until
 * `forget-source` — a log of the keys written on the node, so that a
 * rollback can carry writes made after the switch back to the old table.
 */
export const ADOPT_NODE_SCHEMA = 'reshard_adopt';
const CHANGED_KEYS_TABLE = 'changed_keys';
const LOG_FUNCTION = 'log_key';
const LOG_TRIGGER = 'reshard_adopt_log';
const FENCE_FUNCTION = 'table_fence';
const FENCE_TRIGGER = ADOPTED_TABLE_FENCE_TRIGGER;

export interface AdoptedTableNames {
  schema: string;
  /** The table's own name: leaves are named after it. */
  name: string;
  stagedName: string;
  keyColumn: string;
  keyType: ShardKeyType;
}

/**
 * Creates the staged parent (definition as read from the source, partitioned
 * by the key) and the leaves of `slots`, named after the final table; in the
 * caller's transaction. Idempotent: an existing staged parent is kept.
 */
export async function createStagedParent(client: pg.ClientBase, table: AdoptedTableNames, definition: string, slots: readonly number[], modulus: number): Promise<void> {
  if (await relationExists(client, table.schema, table.stagedName)) return;
  await createParentTable(client, { schema: table.schema, name: table.stagedName, shardKey: [table.keyColumn], definition });
  const parent = quoteQualified(table.schema, table.stagedName);
  if (slots.length === 0) return;
  await client.query(slots.map((slot) =>
    `CREATE TABLE ${quoteQualified(table.schema, leafName(table.name, slot, modulus))} PARTITION OF ${parent} FOR VALUES WITH (MODULUS ${modulus}, REMAINDER ${slot});`).join('\n'));
}

export async function relationExists(db: Queryable, schema: string, name: string): Promise<boolean> {
  const result = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [quoteQualified(schema, name)]);
  return result.rows[0]?.present ?? false;
}

/** Drops the staged parent and its leaves (undo of the registration). */
export async function dropStagedParent(db: Queryable, table: Pick<AdoptedTableNames, 'schema' | 'stagedName'>): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${quoteQualified(table.schema, table.stagedName)} CASCADE`);
}

/** Empties the staged leaves, for a snapshot copy taken again. */
export async function truncateStagedParent(db: Queryable, table: Pick<AdoptedTableNames, 'schema' | 'stagedName'>): Promise<void> {
  await db.query(`TRUNCATE ${quoteQualified(table.schema, table.stagedName)}`);
}

/**
 * Takes the staged parent's primary key off (with its index on every leaf),
 * before a bulk copy into the empty leaves: see `addStagedPrimaryKey`.
 * Idempotent; the staged parent serves nothing, so its lock waits for no one.
 */
export async function dropStagedPrimaryKey(db: Queryable, table: Pick<AdoptedTableNames, 'schema' | 'stagedName'>): Promise<void> {
  const staged = quoteQualified(table.schema, table.stagedName);
  await db.query(`DO $dropkey$
DECLARE
  key_name name := (SELECT conname FROM pg_constraint WHERE conrelid = ${quoteLiteral(staged)}::regclass AND contype = 'p');
BEGIN
  IF key_name IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', ${quoteLiteral(staged)}, key_name);
  END IF;
END
$dropkey$`);
}

/**
 * Builds the staged parent's primary key (`primaryKey`: "PRIMARY KEY (…)")
 * once its leaves hold the copy: one sort per leaf instead of an index kept up
 * row by row (node/leafIndexes.ts). A key on two sources fails here (23505).
 * Idempotent: a parent that has its key is left as it is.
 */
export async function addStagedPrimaryKey(db: pg.ClientBase, table: Pick<AdoptedTableNames, 'schema' | 'stagedName'>, primaryKey: string): Promise<void> {
  const staged = quoteQualified(table.schema, table.stagedName);
  const present = await db.query<{ present: boolean }>(`SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p') AS present`, [staged]);
  if (present.rows[0]?.present) return;
  // Through the extended protocol (a named statement refuses a second command): the clause comes from the catalog's definition.
  await db.query({ text: `ALTER TABLE ${staged} ADD ${primaryKey}`, name: `reshard_staged_key_${Date.now()}_${Math.random().toString(36).slice(2)}` });
}

/**
 * Makes the owner hold exactly `rows` for `keys` (each key's row, or none):
 * delete by key, then insert, one statement (one round trip, atomic; the
 * insert waits for the delete through the one-time filter on it).
 * Idempotent, so a batch applied twice after a crash leaves the same rows.
 */
export async function replaceRowsByKey(db: Queryable, parent: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType }, keys: readonly string[], rows: readonly unknown[]): Promise<void> {
  if (keys.length === 0) return;
  const qualified = quoteQualified(parent.schema, parent.name);
  // OVERRIDING SYSTEM VALUE: the source's key, even into a GENERATED ALWAYS identity column.
  await db.query(`WITH gone AS (DELETE FROM ${qualified} WHERE ${quoteIdent(parent.keyColumn)} = ANY ($1::${parent.keyType}[]) RETURNING 1)
INSERT INTO ${qualified} OVERRIDING SYSTEM VALUE SELECT * FROM jsonb_populate_recordset(NULL::${qualified}, $2::jsonb) WHERE (SELECT count(*) FROM gone) >= 0`,
  [keys, JSON.stringify(rows)]);
}

/**
 * The key log on the staged parent, installed before the cutover (the
 * rename carries it to the table's name): a row trigger on a partitioned
 * table is created on every leaf too, tens of ms that would otherwise be
 * write pause. It logs from then on, so also the keys of the last catch-up
 * and the final sync, whose rows equal the old table's: a rollback that
 * carries them back changes nothing of them. One statement; idempotent; a
 * node already switched (no staged parent) is left as it is.
 */
export async function installKeyLog(db: Queryable, table: AdoptedTableNames, migrationId: number): Promise<void> {
  const staged = quoteQualified(table.schema, table.stagedName);
  await db.query(`DO $keylog$
BEGIN
  IF to_regclass(${quoteLiteral(staged)}) IS NULL THEN RETURN; END IF;
  ${keyLogStatements(table, table.stagedName, migrationId).join(';\n  ')};
END
$keylog$`);
}

/** Undoes `installKeyLog` (the adoption undone before its switch): the trigger off the staged parent, the adoption's logged keys gone. */
export async function removeKeyLog(db: Queryable, table: AdoptedTableNames, migrationId: number): Promise<void> {
  if (await relationExists(db, table.schema, table.stagedName)) await db.query(`DROP TRIGGER IF EXISTS ${LOG_TRIGGER} ON ${quoteQualified(table.schema, table.stagedName)}`);
  if (await relationExists(db, ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE)) {
    await db.query(`DELETE FROM ${quoteQualified(ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE)} WHERE migration_id = $1`, [migrationId]);
  }
}

/**
 * The cutover on one node, one statement (one round trip, one transaction):
 * the old table (if this node holds it under the final name) renamed to
 * `keptName`, the staged parent (with its key log, `installKeyLog`) renamed
 * to the table's name. Idempotent: a node already switched is left as it is.
 */
export async function switchNodeToAdoptedTable(db: Queryable, table: AdoptedTableNames, keptName: string): Promise<void> {
  const staged = quoteQualified(table.schema, table.stagedName);
  const final = quoteQualified(table.schema, table.name);
  await db.query(`DO $switch$
BEGIN
  IF to_regclass(${quoteLiteral(staged)}) IS NULL THEN RETURN; END IF;
  IF (SELECT relkind FROM pg_class WHERE oid = to_regclass(${quoteLiteral(final)})) = 'r' THEN
    ALTER TABLE ${final} RENAME TO ${quoteIdent(keptName)};
  END IF;
  ALTER TABLE ${staged} RENAME TO ${quoteIdent(table.name)};
END
$switch$`);
}

/** The reverse of `switchNodeToAdoptedTable` (undo before the catalog's switch). */
export async function unswitchNode(client: pg.ClientBase, table: AdoptedTableNames, keptName: string): Promise<void> {
  if (await relationExists(client, table.schema, table.stagedName)) return;
  if (!(await isPartitionedTable(client, table.schema, table.name))) return;
  const statements = ['BEGIN', `DROP TRIGGER IF EXISTS ${LOG_TRIGGER} ON ${quoteQualified(table.schema, table.name)}`,
    `ALTER TABLE ${quoteQualified(table.schema, table.name)} RENAME TO ${quoteIdent(table.stagedName)}`];
  if (await relationExists(client, table.schema, keptName)) statements.push(`ALTER TABLE ${quoteQualified(table.schema, keptName)} RENAME TO ${quoteIdent(table.name)}`);
  statements.push('COMMIT');
  try {
    await client.query(statements.join(';\n'));
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

function keyLogStatements(table: AdoptedTableNames, relation: string, migrationId: number): string[] {
  const schema = quoteIdent(ADOPT_NODE_SCHEMA);
  const log = quoteQualified(ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE);
  const fn = quoteQualified(ADOPT_NODE_SCHEMA, LOG_FUNCTION);
  const key = quoteIdent(table.keyColumn);
  return [
    `CREATE SCHEMA IF NOT EXISTS ${schema}`,
    `CREATE TABLE IF NOT EXISTS ${log} (migration_id bigint NOT NULL, key text NOT NULL, PRIMARY KEY (migration_id, key))`,
    // The key column's name is the trigger's argument, so one function serves any table.
    `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  key_column text := TG_ARGV[1];
  migration bigint := TG_ARGV[0]::bigint;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO ${log} VALUES (migration, to_jsonb(OLD) ->> key_column) ON CONFLICT DO NOTHING;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO ${log} VALUES (migration, to_jsonb(NEW) ->> key_column) ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$fn$`,
    `DROP TRIGGER IF EXISTS ${LOG_TRIGGER} ON ${quoteQualified(table.schema, relation)}`,
    `CREATE TRIGGER ${LOG_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON ${quoteQualified(table.schema, relation)} FOR EACH ROW EXECUTE FUNCTION ${fn}('${migrationId}', '${key.slice(1, -1).replaceAll("'", "''")}')`,
  ];
}

export async function isPartitionedTable(db: Queryable, schema: string, name: string): Promise<boolean> {
  const result = await db.query<{ kind: string | null }>('SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)) AS kind', [quoteQualified(schema, name)]);
  return result.rows[0]?.kind === 'p';
}

/** Keys written on this node since the switch (rollback). */
export async function changedKeys(db: Queryable, migrationId: number): Promise<string[]> {
  if (!(await relationExists(db, ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE))) return [];
  const result = await db.query<{ key: string }>(`SELECT key FROM ${quoteQualified(ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE)} WHERE migration_id = $1`, [migrationId]);
  return result.rows.map((row) => row.key);
}

/**
 * Fences the sharded table on this node (rollback): every row write raises
 * RSM01; the parent is locked IN EXCLUSIVE MODE first, which reaches every
 * leaf, so in-flight writers finish (and are logged) before. Idempotent.
 */
export async function fenceAdoptedTable(client: pg.ClientBase, table: Pick<AdoptedTableNames, 'schema' | 'name'>, lockTimeoutMs: number): Promise<void> {
  const qualified = quoteQualified(table.schema, table.name);
  const fn = quoteQualified(ADOPT_NODE_SCHEMA, FENCE_FUNCTION);
  try {
    await client.query(`BEGIN;
SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))};
CREATE SCHEMA IF NOT EXISTS ${quoteIdent(ADOPT_NODE_SCHEMA)};
CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'table %.% is being returned to its old home by reshard rollback', TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = '${FENCE_SQLSTATE}';
END
$fn$;
LOCK TABLE ${qualified} IN EXCLUSIVE MODE;
DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified};
CREATE TRIGGER ${FENCE_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON ${qualified} FOR EACH ROW EXECUTE FUNCTION ${fn}();
COMMIT`);
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Drops the sharded table on this node (rollback's end) and the key log of this adoption. */
export async function dropAdoptedTable(db: Queryable, table: Pick<AdoptedTableNames, 'schema' | 'name' | 'stagedName'>, migrationId: number): Promise<void> {
  if (await isPartitionedTable(db, table.schema, table.name)) await db.query(`DROP TABLE ${quoteQualified(table.schema, table.name)} CASCADE`);
  await dropStagedParent(db, table);
  await dropKeyLog(db, table, migrationId);
}

/** Ends the key log (forget-source): the trigger and this adoption's keys. */
export async function dropKeyLog(db: Queryable, table: Pick<AdoptedTableNames, 'schema' | 'name'>, migrationId: number): Promise<void> {
  if (await isPartitionedTable(db, table.schema, table.name)) await db.query(`DROP TRIGGER IF EXISTS ${LOG_TRIGGER} ON ${quoteQualified(table.schema, table.name)}`);
  if (await relationExists(db, ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE)) {
    await db.query(`DELETE FROM ${quoteQualified(ADOPT_NODE_SCHEMA, CHANGED_KEYS_TABLE)} WHERE migration_id = $1`, [migrationId]);
  }
}

export async function renameTable(db: Queryable, schema: string, from: string, to: string): Promise<void> {
  await db.query(`ALTER TABLE ${quoteQualified(schema, from)} RENAME TO ${quoteIdent(to)}`);
}
