import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';

/** The oldest server reshard supports: DETACH PARTITION … CONCURRENTLY arrived in 14. */
export const SERVER_VERSION_NUM_MIN = 140000;

export interface NodeFacts {
  serverVersion: string;
  serverVersionNum: number;
  walLevel: string;
  superuser: boolean;
  maxReplicationSlots: number;
  maxWalSenders: number;
  encoding: string;
}

export async function inspectNode(db: Queryable): Promise<NodeFacts> {
  const result = await db.query<{
    server_version: string; server_version_num: string; wal_level: string; superuser: string;
    max_replication_slots: string; max_wal_senders: string; encoding: string;
  }>(`SELECT current_setting('server_version') AS server_version,
             current_setting('server_version_num') AS server_version_num,
             current_setting('wal_level') AS wal_level,
             current_setting('is_superuser') AS superuser,
             current_setting('max_replication_slots') AS max_replication_slots,
             current_setting('max_wal_senders') AS max_wal_senders,
             pg_encoding_to_char(encoding) AS encoding
        FROM pg_database WHERE datname = current_database()`);
  const row = result.rows[0]!;
  return {
    serverVersion: row.server_version,
    serverVersionNum: Number(row.server_version_num),
    walLevel: row.wal_level,
    superuser: row.superuser === 'on',
    maxReplicationSlots: Number(row.max_replication_slots),
    maxWalSenders: Number(row.max_wal_senders),
    encoding: row.encoding,
  };
}

/** What every node must satisfy for reshard to manage it (the offline mover's needs). */
export function assertNodeUsable(nodeName: string, facts: NodeFacts): void {
  if (facts.serverVersionNum < SERVER_VERSION_NUM_MIN) {
    throw new ReshardError('unsupported', `node "${nodeName}" runs PostgreSQL ${facts.serverVersion}; reshard needs 14 or newer`, 'upgrade the server');
  }
  if (facts.encoding !== 'UTF8') {
    throw new ReshardError('unsupported', `node "${nodeName}" database encoding is ${facts.encoding}; text slots are computed over UTF-8`, 'use a UTF8 database');
  }
}

/** Settings that only the online mover needs: reported, not refused, when adding a node. */
export function onlineMoverWarnings(nodeName: string, facts: NodeFacts): string[] {
  const warnings: string[] = [];
  if (facts.walLevel !== 'logical') warnings.push(`node "${nodeName}": wal_level is ${facts.walLevel}; online moves need wal_level=logical (set it and restart)`);
  if (!facts.superuser) warnings.push(`node "${nodeName}": the reshard user is not a superuser; online moves need one to create subscriptions on PostgreSQL 15`);
  return warnings;
}

/** The settings and rights the online mover depends on, as one node reports them. */
export interface ReplicationSettings {
  serverVersionNum: number;
  walLevel: string;
  maxReplicationSlots: number;
  /** Replication slots held by others (not the migration being run, if one is named). */
  replicationSlotsUsed: number;
  maxWalSenders: number;
  /** WAL sender processes serving others right now (pg_stat_activity). */
  walSendersUsed: number;
  maxLogicalReplicationWorkers: number;
  /** Logical replication workers (apply, table sync, parallel apply) of others' subscriptions running now (pg_stat_subscription). */
  logicalWorkersUsed: number;
  maxWorkerProcesses: number;
  /**
   * Background workers running now for others, from max_worker_processes: the
   * logical replication launcher, others' logical workers, parallel query
   * workers, extensions' workers (pg_stat_activity).
   */
  backgroundWorkersUsed: number;
  /** The logical replication launcher runs (it is one of the background workers counted above). */
  launcherRuns: boolean;
  walRetrieveRetryIntervalMs: number;
  superuser: boolean;
  /** The REPLICATION attribute: the initial copy opens a replication connection. */
  replicationRole: boolean;
  /** Member of pg_create_subscription (PostgreSQL 16+; always false before). */
  createSubscriptionGranted: boolean;
}

/**
 * Server processes that are not background workers: they do not count
 * against max_worker_processes. Every other backend_type in pg_stat_activity
 * is one (the launcher, logical and parallel workers, extensions' workers
 * under their own names).
 */
export const NOT_BACKGROUND_WORKER_TYPES: readonly string[] = [
  'client backend', 'autovacuum launcher', 'autovacuum worker', 'walsender', 'walreceiver', 'checkpointer', 'background writer',
  'walwriter', 'startup', 'archiver', 'logger', 'standalone backend', 'walsummarizer', 'slotsync worker', 'io worker',
];

/**
 * The node's replication settings and what others already use of them.
 * `ownPrefix`: replication objects whose name starts with it belong to the
 * migration being run (a resume finds them alive) and are not counted as used by others.
 */
export async function readReplicationSettings(db: Queryable, ownPrefix?: string): Promise<ReplicationSettings> {
  const result = await db.query<Record<string, string>>(`WITH own_workers AS (
        SELECT pid FROM pg_stat_subscription WHERE pid IS NOT NULL AND $1::text IS NOT NULL AND starts_with(subname::text, $1::text))
    SELECT
      current_setting('server_version_num') AS server_version_num,
      current_setting('wal_level') AS wal_level,
      current_setting('max_replication_slots') AS max_replication_slots,
      (SELECT count(*) FROM pg_replication_slots WHERE NOT ($1::text IS NOT NULL AND starts_with(slot_name::text, $1::text)))::text AS slots_used,
      current_setting('max_wal_senders') AS max_wal_senders,
      (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'
          AND NOT ($1::text IS NOT NULL AND starts_with(coalesce(application_name, ''), $1::text)))::text AS wal_senders_used,
      current_setting('max_logical_replication_workers') AS max_logical_replication_workers,
      (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL AND pid NOT IN (SELECT pid FROM own_workers))::text AS logical_workers_used,
      current_setting('max_worker_processes') AS max_worker_processes,
      (SELECT count(*) FROM pg_stat_activity WHERE backend_type <> ALL ($2::text[]) AND pid NOT IN (SELECT pid FROM own_workers))::text AS background_workers_used,
      EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'logical replication launcher')::text AS launcher_runs,
      (SELECT setting::int * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END FROM pg_settings WHERE name = 'wal_retrieve_retry_interval')::text AS wal_retrieve_retry_interval_ms,
      current_setting('is_superuser') AS superuser,
      (SELECT rolreplication FROM pg_roles WHERE rolname = current_user)::text AS replication_role,
      -- The role exists from PostgreSQL 16 on; a join, not to_regrole(), so 15 never evaluates pg_has_role on it.
      EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'pg_create_subscription' AND pg_has_role(current_user, r.oid, 'USAGE'))::text AS create_subscription_granted`,
    [ownPrefix ?? null, NOT_BACKGROUND_WORKER_TYPES]);
  const row = result.rows[0]!;
  return {
    serverVersionNum: Number(row['server_version_num']),
    walLevel: row['wal_level']!,
    maxReplicationSlots: Number(row['max_replication_slots']),
    replicationSlotsUsed: Number(row['slots_used']),
    maxWalSenders: Number(row['max_wal_senders']),
    walSendersUsed: Number(row['wal_senders_used']),
    maxLogicalReplicationWorkers: Number(row['max_logical_replication_workers']),
    logicalWorkersUsed: Number(row['logical_workers_used']),
    maxWorkerProcesses: Number(row['max_worker_processes']),
    backgroundWorkersUsed: Number(row['background_workers_used']),
    launcherRuns: row['launcher_runs'] === 'true',
    walRetrieveRetryIntervalMs: Number(row['wal_retrieve_retry_interval_ms']),
    superuser: row['superuser'] === 'on',
    replicationRole: row['replication_role'] === 'true',
    createSubscriptionGranted: row['create_subscription_granted'] === 'true',
  };
}

/** A timeout that applies to reshard's sessions on this node, and where it was set. */
export interface SessionTimeout {
  name: 'statement_timeout' | 'lock_timeout' | 'idle_in_transaction_session_timeout';
  /** 0 = no timeout. */
  valueMs: number;
  /** pg_settings.source: 'default', 'configuration file', 'database', 'user', 'database user', … */
  source: string;
}

/** The timeouts that can end one of reshard's statements or transactions midway. */
export async function readSessionTimeouts(db: Queryable): Promise<SessionTimeout[]> {
  const result = await db.query<{ name: SessionTimeout['name']; value_ms: string; source: string }>(
    `SELECT name, (setting::bigint * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END)::text AS value_ms, source
       FROM pg_settings
      WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')
      ORDER BY name`);
  return result.rows.map((row) => ({ name: row.name, valueMs: Number(row.value_ms), source: row.source }));
}
