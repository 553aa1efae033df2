import type { Queryable } from '../plumbing/queryable.js';
import { NOT_BACKGROUND_WORKER_TYPES } from './inspectNode.js';
import { REPLICATION_NAME_PREFIX } from './replication.js';

/** One of reshard's subscriptions as its source sees it. */
export interface ReplicationStream {
  /** Publication = subscription = replication slot name. */
  name: string;
  /** WAL bytes the subscriber has not replayed yet; undefined before it reports a position. */
  lagBytes: number | undefined;
  /** The leaves (partitions) the stream carries: tells which slots it moves. */
  leaves: string[];
}

/** Every reshard stream leaving this node, with its lag and the leaves it carries, in one query. */
export async function reshardReplicationStreams(source: Queryable): Promise<ReplicationStream[]> {
  // tablename is of type name: cast to text, or node-postgres returns the array as one string.
  const result = await source.query<{ name: string; lag: string | null; leaves: string[] }>(
    `SELECT r.application_name AS name, max(pg_current_wal_lsn() - r.replay_lsn)::text AS lag,
            coalesce(array_agg(DISTINCT pt.tablename::text) FILTER (WHERE pt.tablename IS NOT NULL), '{}') AS leaves
       FROM pg_stat_replication r LEFT JOIN pg_publication_tables pt ON pt.pubname = r.application_name
      WHERE r.application_name LIKE $1
      GROUP BY r.application_name`,
    [`${REPLICATION_NAME_PREFIX.replaceAll('_', '\\_')}%`],
  );
  return result.rows.map((row) => ({ name: row.name, lagBytes: row.lag === null ? undefined : Math.max(0, Number(row.lag)), leaves: row.leaves }));
}

/** One subscription's apply worker as its target reports it, with the limits that decide whether it can run. */
export interface SubscriptionWorkerStatus {
  exists: boolean;
  /** pg_subscription.subenabled. */
  enabled: boolean;
  /** The apply worker's pid (pg_stat_subscription); undefined while none runs. */
  workerPid: number | undefined;
  /** pg_stat_subscription_stats (PostgreSQL 15+; 0 before): errors its apply and table-sync workers stopped on. */
  applyErrorCount: number;
  syncErrorCount: number;
  maxLogicalReplicationWorkers: number;
  /** Logical replication workers running on the server, every subscription's. */
  logicalWorkersUsed: number;
  /** reshard's subscriptions on this server that have no worker: they all wait for one. */
  reshardSubscriptionsWithoutWorker: number;
  maxWorkerProcesses: number;
  backgroundWorkersUsed: number;
  walRetrieveRetryIntervalMs: number;
}

/** pg_stat_subscription_stats arrived in PostgreSQL 15. */
const SUBSCRIPTION_STATS_VERSION_NUM_MIN = 150000;

/** The state of subscription `name`'s apply worker on the target, in two short queries. */
export async function subscriptionWorkerStatus(target: Queryable, name: string): Promise<SubscriptionWorkerStatus> {
  const result = await target.query<Record<string, string | null>>(
    `SELECT (SELECT subenabled::text FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())) AS enabled,
            (SELECT max(pid)::text FROM pg_stat_subscription WHERE subname = $1 AND relid IS NULL) AS worker_pid,
            current_setting('max_logical_replication_workers') AS max_logical_replication_workers,
            (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL)::text AS logical_workers_used,
            (SELECT count(*) FROM pg_subscription s WHERE starts_with(s.subname::text, $2)
                AND NOT EXISTS (SELECT 1 FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.pid IS NOT NULL))::text AS without_worker,
            current_setting('max_worker_processes') AS max_worker_processes,
            (SELECT count(*) FROM pg_stat_activity WHERE backend_type <> ALL ($3::text[]))::text AS background_workers_used,
            (SELECT setting::int * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END FROM pg_settings WHERE name = 'wal_retrieve_retry_interval')::text AS wal_retrieve_retry_interval_ms,
            current_setting('server_version_num') AS server_version_num`,
    [name, REPLICATION_NAME_PREFIX, NOT_BACKGROUND_WORKER_TYPES],
  );
  const row = result.rows[0]!;
  let applyErrorCount = 0;
  let syncErrorCount = 0;
  if (Number(row['server_version_num']) >= SUBSCRIPTION_STATS_VERSION_NUM_MIN && row['enabled'] !== null) {
    const stats = await target.query<{ apply_error_count: string; sync_error_count: string }>(
      'SELECT apply_error_count::text, sync_error_count::text FROM pg_stat_subscription_stats WHERE subname = $1', [name]);
    applyErrorCount = Number(stats.rows[0]?.apply_error_count ?? 0);
    syncErrorCount = Number(stats.rows[0]?.sync_error_count ?? 0);
  }
  return {
    exists: row['enabled'] !== null,
    enabled: row['enabled'] === 'true',
    workerPid: row['worker_pid'] === null ? undefined : Number(row['worker_pid']),
    applyErrorCount,
    syncErrorCount,
    maxLogicalReplicationWorkers: Number(row['max_logical_replication_workers']),
    logicalWorkersUsed: Number(row['logical_workers_used']),
    reshardSubscriptionsWithoutWorker: Number(row['without_worker']),
    maxWorkerProcesses: Number(row['max_worker_processes']),
    backgroundWorkersUsed: Number(row['background_workers_used']),
    walRetrieveRetryIntervalMs: Number(row['wal_retrieve_retry_interval_ms']),
  };
}

/** A replication slot as its source reports it, with the source's WAL senders. */
export interface ReplicationSlotStatus {
  exists: boolean;
  /** A WAL sender streams from it. */
  active: boolean;
  /** The slot's WAL was removed (wal_status = 'lost'): it can never stream again. */
  lost: boolean;
  maxWalSenders: number;
  /** WAL sender processes running on the source. */
  walSendersUsed: number;
}

export async function replicationSlotStatus(source: Queryable, name: string): Promise<ReplicationSlotStatus> {
  const result = await source.query<{ active: boolean | null; wal_status: string | null; max_wal_senders: string; wal_senders_used: string }>(
    `SELECT s.active, s.wal_status, current_setting('max_wal_senders') AS max_wal_senders,
            (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::text AS wal_senders_used
       FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`, [name]);
  const row = result.rows[0]!;
  return {
    exists: row.active !== null,
    active: row.active ?? false,
    lost: row.wal_status === 'lost',
    maxWalSenders: Number(row.max_wal_senders),
    walSendersUsed: Number(row.wal_senders_used),
  };
}
