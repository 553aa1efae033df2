import type { ConnectionSettings } from '../core/connection.js';
import { formatConninfo } from '../core/conninfo.js';
import { ReshardError } from '../core/errors.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/** Every publication, subscription and replication slot reshard makes starts with this. */
export const REPLICATION_NAME_PREFIX = 'reshard_';

/** Prefix of every publication, subscription and replication slot made for one migration. */
export function migrationReplicationPrefix(migrationId: number): string {
  return `${REPLICATION_NAME_PREFIX}m${migrationId}_`;
}

/**
 * The migration a replication object was made for: the coordinator names a
 * batch's objects `reshard_m<migration>_s<first slot>`. Undefined for a name
 * of another shape (made by an older reshard, or by hand).
 */
export function migrationIdOfReplicationName(name: string): number | undefined {
  const match = new RegExp(`^${REPLICATION_NAME_PREFIX}m([0-9]+)_`).exec(name);
  return match ? Number(match[1]) : undefined;
}

/**
 * A libpq connection string for a subscription: the source's peer address
 * with its libpq params (sslmode, sslrootcert…: paths on the subscriber's
 * machine) and the password, if any (PostgreSQL keeps it in
 * pg_subscription.subconninfo while the subscription lives). No
 * application_name: the walsender must report the subscription's own name,
 * which catch-up polling looks for.
 */
export function subscriptionConninfo(connection: ConnectionSettings): string {
  return formatConninfo(connection, { omitParams: ['application_name'] });
}

/** Publishes exactly the given leaves (schema, name). Idempotent. */
export async function ensurePublication(source: Queryable, name: string, leaves: readonly { schema: string; name: string }[]): Promise<void> {
  const exists = await source.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present', [name]);
  if (exists.rows[0]?.present) return;
  await source.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${leaves.map((leaf) => quoteQualified(leaf.schema, leaf.name)).join(', ')}`);
}

export async function dropPublication(source: Queryable, name: string): Promise<void> {
  await source.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`);
}

/**
 * Subscribes the target to the source's publication with an initial copy.
 * synchronous_commit = on: with the default (off) the apply worker reports an
 * applied position only after the WAL writer's next round (up to
 * wal_writer_delay), and every cutover's final sync would wait for it.
 * Idempotent. The subscription's name is also its replication slot's name and
 * the application_name its walsender reports on the source.
 */
export async function subscriptionExists(target: Queryable, name: string): Promise<boolean> {
  const exists = await target.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1) AS present', [name]);
  return exists.rows[0]?.present ?? false;
}

/**
 * `existingSlot`: the subscription streams from a replication slot reshard
 * created (and copied at its snapshot) instead of making its own initial copy.
 */
export async function ensureSubscription(target: Queryable, name: string, source: ConnectionSettings, publication: string, existingSlot?: string): Promise<void> {
  if (await subscriptionExists(target, name)) return;
  const options = existingSlot
    ? `copy_data = false, create_slot = false, slot_name = ${quoteLiteral(existingSlot)}, synchronous_commit = 'on'`
    : `copy_data = true, synchronous_commit = 'on'`;
  try {
    await target.query(
      `CREATE SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(subscriptionConninfo(source))} PUBLICATION ${quoteIdent(publication)} WITH (${options})`,
    );
  } catch (error) {
    const message = (error as Error).message ?? String(error);
    throw new ReshardError('unreachable', `the target could not subscribe to the source (${message.replace(/password=\S+/g, 'password=…')})`,
      'the target node must reach the source at its peer address (`reshard node set NAME --peer-url URL`), with a superuser (or pg_create_subscription on 16+)', { cause: error });
  }
}

/**
 * Drops a subscription and with it its replication slot on the source. If the
 * source cannot be reached, the slot is detached from the subscription so the
 * drop still succeeds; the orphaned slot must then be dropped on the source
 * (`dropReplicationSlot`).
 */
export async function dropSubscription(target: Queryable, name: string): Promise<void> {
  const exists = await target.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1) AS present', [name]);
  if (!exists.rows[0]?.present) return;
  try {
    await target.query(`DROP SUBSCRIPTION ${quoteIdent(name)}`);
  } catch {
    await target.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`);
    await target.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} SET (slot_name = NONE)`);
    await target.query(`DROP SUBSCRIPTION ${quoteIdent(name)}`);
  }
}

/** How long a slot may stay in use by a walsender that is going away before the drop gives up. */
const SLOT_RELEASE_TIMEOUT_MS = 10_000;

/**
 * Drops a replication slot on the source if it exists: an orphaned slot pins
 * WAL until the disk is full. A walsender still using it (a connection that
 * just closed, a subscription being dropped) is waited for, boundedly.
 */
export async function dropReplicationSlot(source: Queryable, name: string): Promise<void> {
  const deadline = performance.now() + SLOT_RELEASE_TIMEOUT_MS;
  for (;;) {
    const result = await source.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [name]);
    const slot = result.rows[0];
    if (!slot) return;
    if (!slot.active) {
      await source.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [name]);
      continue;
    }
    if (performance.now() >= deadline) {
      throw new ReshardError('timeout', `replication slot ${name} is still in use after ${SLOT_RELEASE_TIMEOUT_MS} ms`, `drop it on the source with SELECT pg_drop_replication_slot('${name}') once its walsender is gone`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Bytes the subscription's apply worker has not yet replayed, from the source's view; undefined if not connected. */
export async function replicationLagBytes(source: Queryable, name: string): Promise<number | undefined> {
  const result = await source.query<{ lag: string | null }>(
    `SELECT (pg_current_wal_lsn() - replay_lsn)::text AS lag FROM pg_stat_replication WHERE application_name = $1 ORDER BY replay_lsn DESC NULLS LAST LIMIT 1`,
    [name],
  );
  const lag = result.rows[0]?.lag;
  return lag === undefined || lag === null ? undefined : Math.max(0, Number(lag));
}

export async function currentWalLsn(source: Queryable): Promise<string> {
  const result = await source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return result.rows[0]!.lsn;
}

/** True once the subscription's walsender reports a replay position at or past `lsn`. */
export async function replayedPast(source: Queryable, name: string, lsn: string): Promise<boolean> {
  const result = await source.query<{ done: boolean }>(
    'SELECT coalesce(bool_or(replay_lsn >= $2::pg_lsn), false) AS done FROM pg_stat_replication WHERE application_name = $1',
    [name, lsn],
  );
  return result.rows[0]?.done ?? false;
}

/** reshard's publications, subscriptions and replication slots on one node (orphans, if no migration runs). */
export async function reshardReplicationObjects(db: Queryable): Promise<{ publications: string[]; subscriptions: string[]; slots: string[] }> {
  const like = `${REPLICATION_NAME_PREFIX}%`;
  const publications = await db.query<{ name: string }>('SELECT pubname AS name FROM pg_publication WHERE pubname LIKE $1 ORDER BY 1', [like]);
  const subscriptions = await db.query<{ name: string }>(
    'SELECT subname AS name FROM pg_subscription WHERE subname LIKE $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1', [like]);
  const slots = await db.query<{ name: string }>('SELECT slot_name AS name FROM pg_replication_slots WHERE slot_name LIKE $1 ORDER BY 1', [like]);
  return {
    publications: publications.rows.map((row) => row.name),
    subscriptions: subscriptions.rows.map((row) => row.name),
    slots: slots.rows.map((row) => row.name),
  };
}

export interface ReplicationSlotHealth {
  slotName: string;
  /** WAL the source keeps for this slot (from its restart point to now). */
  retainedBytes: number;
  /** Bytes the subscriber has yet to replay; undefined while no subscriber streams (e.g. during the initial copy). */
  lagBytes: number | undefined;
}

/** Retained WAL and apply lag of the replication slots whose name starts with `prefix`, on one source. */
export async function replicationSlotHealth(source: Queryable, prefix: string): Promise<ReplicationSlotHealth[]> {
  const result = await source.query<{ slot_name: string; retained: string | null; lag: string | null }>(
    `SELECT s.slot_name,
            (pg_current_wal_lsn() - s.restart_lsn)::text AS retained,
            (pg_current_wal_lsn() - r.replay_lsn)::text AS lag
       FROM pg_replication_slots s
       LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
      WHERE starts_with(s.slot_name, $1)
      ORDER BY s.slot_name`,
    [prefix],
  );
  return result.rows.map((row) => ({
    slotName: row.slot_name,
    retainedBytes: Math.max(0, Number(row.retained ?? 0)),
    lagBytes: row.lag === null ? undefined : Math.max(0, Number(row.lag)),
  }));
}

/** reshard's publications on a source whose name starts with `prefix`, each with the leaves (schema, name) it publishes. */
export async function publishedLeaves(source: Queryable, prefix: string): Promise<{ publication: string; leaves: { schema: string; name: string }[] }[]> {
  // schemaname and tablename are of type name: cast to text, or node-postgres returns the arrays as one string.
  const result = await source.query<{ publication: string; schemas: string[]; names: string[] }>(
    `SELECT p.pubname AS publication,
            coalesce(array_agg(pt.schemaname::text ORDER BY pt.schemaname, pt.tablename) FILTER (WHERE pt.tablename IS NOT NULL), '{}') AS schemas,
            coalesce(array_agg(pt.tablename::text ORDER BY pt.schemaname, pt.tablename) FILTER (WHERE pt.tablename IS NOT NULL), '{}') AS names
       FROM pg_publication p LEFT JOIN pg_publication_tables pt ON pt.pubname = p.pubname
      WHERE starts_with(p.pubname::text, $1)
      GROUP BY p.pubname ORDER BY p.pubname`,
    [prefix],
  );
  return result.rows.map((row) => ({ publication: row.publication, leaves: row.names.map((name, index) => ({ schema: row.schemas[index]!, name })) }));
}
