import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../core/queryable.js';

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
