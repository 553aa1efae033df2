import type { NodeRecord } from '../catalog/nodes.js';
import { ReshardError } from '../core/errors.js';
import { connectNode, type PasswordLookup } from '../node/nodeAccess.js';

export interface OnlineSettings {
  walLevel: string;
  maxReplicationSlots: number;
  maxWalSenders: number;
  maxLogicalReplicationWorkers: number;
  walRetrieveRetryIntervalMs: number;
  superuser: boolean;
  replicationSlotsUsed: number;
}

/** Reads the settings the online mover depends on. */
export async function readOnlineSettings(node: NodeRecord, passwords: PasswordLookup): Promise<OnlineSettings> {
  const client = await connectNode(node, passwords);
  try {
    const result = await client.query<Record<string, string>>(`SELECT
        current_setting('wal_level') AS wal_level,
        current_setting('max_replication_slots') AS max_replication_slots,
        current_setting('max_wal_senders') AS max_wal_senders,
        current_setting('max_logical_replication_workers') AS max_logical_replication_workers,
        (SELECT setting::int * CASE unit WHEN 's' THEN 1000 ELSE 1 END FROM pg_settings WHERE name = 'wal_retrieve_retry_interval')::text AS wal_retrieve_retry_interval_ms,
        current_setting('is_superuser') AS superuser,
        (SELECT count(*) FROM pg_replication_slots)::text AS slots_used`);
    const row = result.rows[0]!;
    return {
      walLevel: row['wal_level']!,
      maxReplicationSlots: Number(row['max_replication_slots']),
      maxWalSenders: Number(row['max_wal_senders']),
      maxLogicalReplicationWorkers: Number(row['max_logical_replication_workers']),
      walRetrieveRetryIntervalMs: Number(row['wal_retrieve_retry_interval_ms']),
      superuser: row['superuser'] === 'on',
      replicationSlotsUsed: Number(row['slots_used']),
    };
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Checks, before a migration is recorded, that every node taking part can run
 * online moves: one clear error per problem, naming the node and the fix.
 * Returns warnings for settings that work but cost time.
 */
export async function assertOnlineReady(nodes: readonly NodeRecord[], passwords: PasswordLookup, concurrentBatchesPerNode: (name: string) => number): Promise<string[]> {
  const warnings: string[] = [];
  for (const node of nodes) {
    const settings = await readOnlineSettings(node, passwords);
    if (settings.walLevel !== 'logical') {
      throw new ReshardError('precondition', `node "${node.name}" has wal_level=${settings.walLevel}; online moves need logical`,
        `set wal_level = logical on it and restart the server, or use --mode offline`);
    }
    if (!settings.superuser) {
      throw new ReshardError('precondition', `node "${node.name}": the reshard user is not a superuser, which creating subscriptions needs on PostgreSQL 15`,
        'connect as a superuser (or grant pg_create_subscription on 16+), or use --mode offline');
    }
    // Each concurrent batch needs a slot and a walsender on the source, plus up to two table-sync slots.
    const needed = concurrentBatchesPerNode(node.name) * 3;
    if (settings.maxReplicationSlots - settings.replicationSlotsUsed < needed || settings.maxWalSenders < needed) {
      throw new ReshardError('precondition',
        `node "${node.name}" allows ${settings.maxReplicationSlots} replication slots (${settings.replicationSlotsUsed} used) and ${settings.maxWalSenders} WAL senders; ${needed} are needed`,
        `raise max_replication_slots and max_wal_senders to at least ${needed + settings.replicationSlotsUsed} and restart, or lower the node's --concurrency`);
    }
    if (settings.maxLogicalReplicationWorkers < concurrentBatchesPerNode(node.name) + 2) {
      warnings.push(`node "${node.name}": max_logical_replication_workers=${settings.maxLogicalReplicationWorkers} limits parallel initial copies`);
    }
    if (settings.walRetrieveRetryIntervalMs > 1000) {
      warnings.push(`node "${node.name}": wal_retrieve_retry_interval is ${settings.walRetrieveRetryIntervalMs} ms; set it to 100ms (reload) so back-to-back subscriptions start at once`);
    }
  }
  return warnings;
}
