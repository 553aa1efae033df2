import type { Queryable } from '../core/queryable.js';
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
