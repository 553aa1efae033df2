import type { NodeRecord } from '../catalog/nodes.js';
import { ReshardError } from '../core/errors.js';
import { readReplicationSettings, type ReplicationSettings } from '../node/inspectNode.js';
import { connectNode, type PasswordLookup } from '../node/nodeAccess.js';
import { allPairs, assertPeersReachable, type ReplicationPair } from './peerReachability.js';

/** wal_retrieve_retry_interval above this delays every new subscription's worker visibly. */
export const WAL_RETRIEVE_RETRY_INTERVAL_MS_MAX = 1_000;

/** pg_create_subscription and non-superuser subscriptions arrived in PostgreSQL 16. */
const CREATE_SUBSCRIPTION_ROLE_VERSION_NUM_MIN = 160000;

/** One setting or right of a node that online moves need: an error stops them, a warning costs time. */
export interface SettingProblem {
  severity: 'error' | 'warning';
  /** The setting or right, as `reshard doctor` names its check. */
  check: 'wal_level' | 'privileges' | 'replication_slots' | 'logical_workers' | 'wal_retrieve_retry_interval';
  message: string;
  fix: string;
}

/**
 * Judges a node's settings for `concurrentBatches` online batches at once
 * (its --concurrency). Pure: the preflight of `rebalance` and `reshard
 * doctor` share it, so they never disagree about what a node needs.
 */
export function onlineSettingProblems(nodeName: string, settings: ReplicationSettings, concurrentBatches: number): SettingProblem[] {
  const problems: SettingProblem[] = [];
  if (settings.walLevel !== 'logical') {
    problems.push({ severity: 'error', check: 'wal_level', message: `node "${nodeName}" has wal_level=${settings.walLevel}; online moves need logical`,
      fix: 'set wal_level = logical on it and restart the server, or use --mode offline' });
  }
  const delegated = settings.serverVersionNum >= CREATE_SUBSCRIPTION_ROLE_VERSION_NUM_MIN && settings.createSubscriptionGranted && settings.replicationRole;
  if (!settings.superuser && !delegated) {
    problems.push({ severity: 'error', check: 'privileges', message: `node "${nodeName}": the reshard user is not a superuser, which creating subscriptions needs on PostgreSQL 15`,
      fix: 'connect as a superuser (or grant pg_create_subscription and REPLICATION on 16+), or use --mode offline' });
  }
  // Each concurrent batch needs a slot and a walsender on the source, plus up to two table-sync slots.
  const needed = concurrentBatches * 3;
  if (settings.maxReplicationSlots - settings.replicationSlotsUsed < needed || settings.maxWalSenders < needed) {
    problems.push({ severity: 'error', check: 'replication_slots',
      message: `node "${nodeName}" allows ${settings.maxReplicationSlots} replication slots (${settings.replicationSlotsUsed} used) and ${settings.maxWalSenders} WAL senders; ${needed} are needed`,
      fix: `raise max_replication_slots and max_wal_senders to at least ${needed + settings.replicationSlotsUsed} and restart, or lower the node's --concurrency` });
  }
  const workersNeeded = concurrentBatches + 2;
  if (settings.maxLogicalReplicationWorkers < workersNeeded) {
    problems.push({ severity: 'warning', check: 'logical_workers', message: `node "${nodeName}": max_logical_replication_workers=${settings.maxLogicalReplicationWorkers} limits parallel initial copies`,
      fix: `set max_logical_replication_workers to at least ${workersNeeded} and restart` });
  }
  // Logical replication workers (and their launcher) are taken from max_worker_processes.
  if (settings.maxWorkerProcesses < settings.maxLogicalReplicationWorkers + 1) {
    problems.push({ severity: 'warning', check: 'logical_workers',
      message: `node "${nodeName}": max_worker_processes=${settings.maxWorkerProcesses} leaves no room for ${settings.maxLogicalReplicationWorkers} logical replication workers and their launcher`,
      fix: `set max_worker_processes to at least ${settings.maxLogicalReplicationWorkers + 1} and restart` });
  }
  if (settings.walRetrieveRetryIntervalMs > WAL_RETRIEVE_RETRY_INTERVAL_MS_MAX) {
    problems.push({ severity: 'warning', check: 'wal_retrieve_retry_interval',
      message: `node "${nodeName}": wal_retrieve_retry_interval is ${settings.walRetrieveRetryIntervalMs} ms, which delays each new subscription's worker start`,
      fix: 'set it to 100ms (a reload is enough) so back-to-back subscriptions start at once' });
  }
  return problems;
}

/**
 * Checks, before a migration is recorded, that every node taking part can run
 * online moves: one clear error per problem, naming the node and the fix.
 * Returns warnings for settings that work but cost time.
 */
export async function assertOnlineReady(nodes: readonly NodeRecord[], passwords: PasswordLookup, concurrentBatchesPerNode: (name: string) => number,
  replicationPairs: readonly ReplicationPair[] = allPairs(nodes)): Promise<string[]> {
  const warnings: string[] = [];
  for (const node of nodes) {
    const client = await connectNode(node, passwords);
    let settings: ReplicationSettings;
    try {
      settings = await readReplicationSettings(client);
    } finally {
      await client.end().catch(() => {});
    }
    const problems = onlineSettingProblems(node.name, settings, concurrentBatchesPerNode(node.name));
    const error = problems.find((problem) => problem.severity === 'error');
    if (error) throw new ReshardError('precondition', error.message, error.fix);
    warnings.push(...problems.map((problem) => `${problem.message}; ${problem.fix}`));
  }
  // Each target must reach its source's peer address as its subscription will.
  warnings.push(...await assertPeersReachable(replicationPairs, passwords));
  return warnings;
}
