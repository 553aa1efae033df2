import { existsSync, statfsSync } from 'node:fs';
import type { Queryable } from '../plumbing/queryable.js';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1']);

export interface MeasuredSpace {
  /** Bytes every database of the server uses. */
  usedBytes: number;
  /** Free bytes on the data directory's filesystem, when this process can see it (a server on this machine). */
  freeBytes: number | undefined;
}

/**
 * What a node's server uses, and — for a server on this machine — the free
 * space of the filesystem under its data directory. PostgreSQL cannot report
 * free disk space itself; for a remote node the configured capacity stands in.
 */
export async function measureNodeSpace(db: Queryable, host: string): Promise<MeasuredSpace> {
  const result = await db.query<{ used: string; data_directory: string | null }>(
    `SELECT (SELECT sum(pg_database_size(oid)) FROM pg_database WHERE datallowconn)::text AS used,
            current_setting('data_directory', true) AS data_directory`,
  );
  const row = result.rows[0]!;
  const usedBytes = Number(row.used ?? 0);
  const directory = row.data_directory;
  const local = LOOPBACK_HOSTS.has(host) || host.startsWith('/');
  if (!local || !directory || !existsSync(directory)) return { usedBytes, freeBytes: undefined };
  const stats = statfsSync(directory);
  return { usedBytes, freeBytes: Number(stats.bavail) * Number(stats.bsize) };
}
