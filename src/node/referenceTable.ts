import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ReshardError } from '../core/errors.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { NODE_SCHEMA } from './nodeHelpers.js';
import { dropSubscription, REPLICATION_NAME_PREFIX } from './replication.js';

/** The SQLSTATE of a direct write to a reference table's copy on a node that is not its holder. */
export const NOT_HOLDER_SQLSTATE = 'RSM03';

/** The publication of a holder's reference tables (one per holder database). */
export const REFERENCE_PUBLICATION = `${REPLICATION_NAME_PREFIX}ref`;

/** Every subscription (and its replication slot on the holder) that carries reference tables starts with this. */
export const REFERENCE_SUBSCRIPTION_PREFIX = `${REPLICATION_NAME_PREFIX}ref_`;

const GUARD_ROW_TRIGGER = 'reshard_reference_guard';
const GUARD_TRUNCATE_TRIGGER = 'reshard_reference_guard_truncate';
const IDENTIFIER_CHARS_MAX = 63;

export interface ReferenceTableSpec {
  schema: string;
  name: string;
  /** The column and constraint list, as in `CREATE TABLE t ( <definition> )`. */
  definition: string;
}

/** True for a reference publication or subscription/slot name: owned by a reference table, never an orphan of a migration. */
export function isReferenceReplicationName(name: string): boolean {
  return name === REFERENCE_PUBLICATION || name.startsWith(REFERENCE_SUBSCRIPTION_PREFIX);
}

/**
 * The subscription of `subscriber` to `holder`'s reference publication; also
 * its replication slot's name on the holder, so it names both ends (two
 * subscriber databases may share the holder's server). Long node names are
 * shortened with a hash so the name fits PostgreSQL's identifier limit.
 */
export function referenceSubscriptionName(holder: string, subscriber: string): string {
  const name = `${REFERENCE_SUBSCRIPTION_PREFIX}${holder}_${subscriber}`;
  if (name.length <= IDENTIFIER_CHARS_MAX && /^[a-z0-9_]+$/.test(name)) return name;
  // Slot names allow only [a-z0-9_]: anything else (and so no two case-different names) is hashed.
  const digest = createHash('sha256').update(`${holder}\u0000${subscriber}`).digest('hex').slice(0, 16);
  return `${REFERENCE_SUBSCRIPTION_PREFIX}${holder.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 20)}_${digest}`;
}

/**
 * Creates the table (through the extended protocol: one statement only) and
 * checks that it has a primary key: logical replication needs a replica
 * identity to carry UPDATE and DELETE. Idempotent: an existing table with
 * the same name is left as it is. In the caller's transaction.
 */
export async function createReferenceTable(client: pg.ClientBase, spec: ReferenceTableSpec): Promise<void> {
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(spec.schema)}`);
  const exists = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [quoteQualified(spec.schema, spec.name)]);
  if (exists.rows[0]?.present) return;
  try {
    await client.query({
      text: `CREATE TABLE ${quoteQualified(spec.schema, spec.name)} (${spec.definition})`,
      name: `reshard_create_reference_${Date.now()}_${Math.random().toString(36).slice(2)}`,
    });
  } catch (error) {
    const message = (error as Error).message ?? String(error);
    throw new ReshardError('bad_input', `the reference table "${spec.name}" could not be created (${message})`, 'fix the --columns definition');
  }
  const primaryKey = await client.query<{ present: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary) AS present', [quoteQualified(spec.schema, spec.name)]);
  if (!primaryKey.rows[0]?.present) {
    throw new ReshardError('bad_input', `the reference table "${spec.name}" has no primary key`,
      'add PRIMARY KEY (…) to its --columns: logical replication needs one to carry UPDATE and DELETE to every node');
  }
}

/**
 * On a node that is not the holder: local writers (INSERT, UPDATE, DELETE,
 * TRUNCATE) are refused with NOT_HOLDER_SQLSTATE and a hint naming the
 * holder. The triggers are ordinary (origin-enabled), so the logical
 * replication apply worker (session_replication_role = replica) does not fire
 * them and the holder's changes still arrive. Idempotent.
 */
export async function guardReferenceCopy(db: Queryable, spec: ReferenceTableSpec, holder: string): Promise<void> {
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${NODE_SCHEMA}`);
  await db.query(`CREATE OR REPLACE FUNCTION ${NODE_SCHEMA}.refuse_reference_write() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = '${NOT_HOLDER_SQLSTATE}',
    MESSAGE = format('reshard: %I is a reference table; this node holds a read-only copy', TG_TABLE_NAME),
    DETAIL = json_build_object('holder', TG_ARGV[0])::text,
    HINT = format('write it on its holder, node %s (the router''s reference() does)', TG_ARGV[0]);
END
$fn$`);
  const table = quoteQualified(spec.schema, spec.name);
  // One simple query, so one transaction (implicit, or the caller's): re-pointing the hint to a new holder
  // never leaves a moment without the guard, when a local write would slip in and reach no other copy.
  await db.query([
    `DROP TRIGGER IF EXISTS ${GUARD_ROW_TRIGGER} ON ${table}`,
    `DROP TRIGGER IF EXISTS ${GUARD_TRUNCATE_TRIGGER} ON ${table}`,
    `CREATE TRIGGER ${GUARD_ROW_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${NODE_SCHEMA}.refuse_reference_write(${quoteLiteral(holder)})`,
    `CREATE TRIGGER ${GUARD_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ${NODE_SCHEMA}.refuse_reference_write(${quoteLiteral(holder)})`,
  ].join('; '));
}

/**
 * Empties a copy before a new subscription's initial copy fills it (a node
 * added again still has its copy from before; the copy would collide with
 * it). The write guard is dropped first: it refuses TRUNCATE; the caller
 * puts it back.
 */
export async function emptyReferenceCopy(db: Queryable, spec: Pick<ReferenceTableSpec, 'schema' | 'name'>): Promise<void> {
  const table = quoteQualified(spec.schema, spec.name);
  await db.query(`DROP TRIGGER IF EXISTS ${GUARD_ROW_TRIGGER} ON ${table}; DROP TRIGGER IF EXISTS ${GUARD_TRUNCATE_TRIGGER} ON ${table}; TRUNCATE ${table}`);
}

/** Reference replication slots in this node's database (a server may hold other nodes' databases too). */
export async function referenceSlotsHere(db: Queryable): Promise<string[]> {
  const result = await db.query<{ name: string }>(
    'SELECT slot_name AS name FROM pg_replication_slots WHERE starts_with(slot_name::text, $1) AND database = current_database() ORDER BY 1',
    [REFERENCE_SUBSCRIPTION_PREFIX]);
  return result.rows.map((row) => row.name);
}

/** Adds the table to the holder's reference publication (created on first use). Idempotent. */
export async function publishReferenceTable(holder: Queryable, spec: Pick<ReferenceTableSpec, 'schema' | 'name'>): Promise<void> {
  const table = quoteQualified(spec.schema, spec.name);
  const state = await holder.query<{ publication: boolean; published: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS publication,
            EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3) AS published`,
    [REFERENCE_PUBLICATION, spec.schema, spec.name]);
  const { publication, published } = state.rows[0]!;
  if (published) return;
  await holder.query(publication
    ? `ALTER PUBLICATION ${quoteIdent(REFERENCE_PUBLICATION)} ADD TABLE ${table}`
    : `CREATE PUBLICATION ${quoteIdent(REFERENCE_PUBLICATION)} FOR TABLE ${table}`);
}

/**
 * Makes an existing subscription pick up tables added to its publication
 * since, with an initial copy of each. Not in a transaction block.
 */
export async function refreshReferenceSubscription(subscriber: Queryable, name: string): Promise<void> {
  await subscriber.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} REFRESH PUBLICATION WITH (copy_data = true)`);
}

/** Per table ('schema.name'), the subscription's sync state on the subscriber (pg_subscription_rel.srsubstate: 'r' = ready). */
export async function referenceSyncStates(subscriber: Queryable, name: string): Promise<Map<string, string>> {
  const result = await subscriber.query<{ table_name: string; state: string }>(
    `SELECT n.nspname || '.' || c.relname AS table_name, sr.srsubstate::text AS state
       FROM pg_subscription s
       JOIN pg_subscription_rel sr ON sr.srsubid = s.oid
       JOIN pg_class c ON c.oid = sr.srrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, [name]);
  return new Map(result.rows.map((row) => [row.table_name, row.state]));
}

/** A reference copy's rows and order-independent checksum (sum of a 64-bit hash of each row's text form). */
export interface ReferenceCopyStats {
  exists: boolean;
  rows: number;
  checksum: string;
}

export async function referenceCopyStats(db: Queryable, spec: Pick<ReferenceTableSpec, 'schema' | 'name'>): Promise<ReferenceCopyStats> {
  const table = quoteQualified(spec.schema, spec.name);
  const exists = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [table]);
  if (!exists.rows[0]?.present) return { exists: false, rows: 0, checksum: '0' };
  // The text form hashes the same on every node for the same values: no OIDs (enums) or per-node state enter it.
  const result = await db.query<{ rows: string; checksum: string }>(
    `SELECT count(*)::text AS rows, coalesce(sum(hashtextextended(r::text, 0)::numeric), 0)::text AS checksum FROM ${table} AS r`);
  return { exists: true, rows: Number(result.rows[0]!.rows), checksum: result.rows[0]!.checksum };
}

/** Whether the subscription exists and is enabled on the subscriber. */
export async function referenceSubscriptionState(subscriber: Queryable, name: string): Promise<{ exists: boolean; enabled: boolean }> {
  const result = await subscriber.query<{ enabled: boolean }>(
    'SELECT subenabled AS enabled FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())', [name]);
  const row = result.rows[0];
  return { exists: row !== undefined, enabled: row?.enabled ?? false };
}

/**
 * Drops every reference subscription of a node leaving the cluster (and with
 * each its replication slot on the holder, which would pin WAL there). The
 * copies themselves stay, read-only, as a removed node's parents do.
 */
export async function dropReferenceSubscriptions(db: Queryable): Promise<string[]> {
  const result = await db.query<{ name: string }>(
    `SELECT subname AS name FROM pg_subscription
      WHERE starts_with(subname::text, $1) AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1`,
    [REFERENCE_SUBSCRIPTION_PREFIX]);
  for (const { name } of result.rows) await dropSubscription(db, name);
  return result.rows.map((row) => row.name);
}

/** Lets local writers write the copy again: on the node that becomes its holder. */
export async function unguardReferenceCopy(db: Queryable, spec: Pick<ReferenceTableSpec, 'schema' | 'name'>): Promise<void> {
  const table = quoteQualified(spec.schema, spec.name);
  await db.query(`DROP TRIGGER IF EXISTS ${GUARD_ROW_TRIGGER} ON ${table}; DROP TRIGGER IF EXISTS ${GUARD_TRUNCATE_TRIGGER} ON ${table}`);
}

/** Takes the table out of the holder's reference publication (its subscribers stop applying it at their next refresh). */
export async function unpublishReferenceTable(holder: Queryable, spec: Pick<ReferenceTableSpec, 'schema' | 'name'>): Promise<void> {
  const published = await holder.query<{ present: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3) AS present',
    [REFERENCE_PUBLICATION, spec.schema, spec.name]);
  if (published.rows[0]?.present) await holder.query(`ALTER PUBLICATION ${quoteIdent(REFERENCE_PUBLICATION)} DROP TABLE ${quoteQualified(spec.schema, spec.name)}`);
}

/**
 * Subscribes to a holder's publication without an initial copy: for copies
 * already equal to the holder's (a holder move, after the old holder was
 * fenced and every copy replayed its last write). An existing subscription
 * is refreshed, also without copy. Not in a transaction block.
 */
export async function subscribeWithoutCopy(subscriber: Queryable, name: string, conninfo: string): Promise<void> {
  const exists = await subscriber.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1) AS present', [name]);
  if (exists.rows[0]?.present) {
    await subscriber.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} REFRESH PUBLICATION WITH (copy_data = false)`);
    return;
  }
  await subscriber.query(`CREATE SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(conninfo)} PUBLICATION ${quoteIdent(REFERENCE_PUBLICATION)} WITH (copy_data = false, synchronous_commit = 'on')`);
}

/** Drops the reference publication if it publishes nothing any more. */
export async function dropEmptyReferencePublication(holder: Queryable): Promise<boolean> {
  const result = await holder.query<{ empty: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1) AND EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS empty`, [REFERENCE_PUBLICATION]);
  if (!result.rows[0]?.empty) return false;
  await holder.query(`DROP PUBLICATION ${quoteIdent(REFERENCE_PUBLICATION)}`);
  return true;
}

/** Makes a subscription drop tables its publication no longer has (and add new ones without a copy). Not in a transaction block. */
export async function refreshReferenceSubscriptionWithoutCopy(subscriber: Queryable, name: string): Promise<void> {
  await subscriber.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} REFRESH PUBLICATION WITH (copy_data = false)`);
}

export async function dropReferenceSubscription(subscriber: Queryable, name: string): Promise<void> {
  await dropSubscription(subscriber, name);
}
