import type { ReplicationSettings } from '../node/inspectNode.js';
import { replicationCapacity, settingValueNeeded } from './replicationCapacity.js';

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

/** What a plan asks of one node at once, before its limits are applied. */
export interface OnlineNeed {
  /** Subscriptions into this node the plan would keep alive at once (0: the node is no target). */
  subscriptionsWanted: number;
  /** Publications (replication slots) from this node the plan would keep alive at once (0: no source). */
  publicationsWanted: number;
  /** The node's own limit on moves at once (`--concurrency`). */
  concurrencyMax: number;
}

/** Every setting here is read only at server start. */
function alterCommands(nodeName: string, settings: readonly { name: string; value: number }[]): string {
  const commands = settings.map((setting) => `ALTER SYSTEM SET ${setting.name} = ${setting.value};`).join(' ');
  return `${commands} on "${nodeName}", then restart it (${settings.length > 1 ? 'these settings take' : 'the setting takes'} effect only at server start)`;
}

/** The settings to raise, with their values, for `wanted` batches at once in the given role. */
function raises(role: 'target' | 'source', settings: ReplicationSettings, wanted: number, copiesAtOnce: number): { name: string; value: number }[] {
  const names = role === 'target'
    ? (['max_logical_replication_workers', 'max_worker_processes'] as const)
    : (['max_replication_slots', 'max_wal_senders'] as const);
  const current: Record<(typeof names)[number], number> = {
    max_logical_replication_workers: settings.maxLogicalReplicationWorkers,
    max_worker_processes: settings.maxWorkerProcesses,
    max_replication_slots: settings.maxReplicationSlots,
    max_wal_senders: settings.maxWalSenders,
  };
  return names
    .map((name) => ({ name, value: settingValueNeeded(name, settings, wanted, copiesAtOnce) }))
    .filter((raise) => raise.value > current[raise.name]);
}

function describeUse(setting: string, settings: ReplicationSettings): string {
  switch (setting) {
    case 'max_logical_replication_workers': return `max_logical_replication_workers = ${settings.maxLogicalReplicationWorkers}, ${settings.logicalWorkersUsed} in use by others`;
    case 'max_worker_processes': return `max_worker_processes = ${settings.maxWorkerProcesses}, ${settings.backgroundWorkersUsed} in use${settings.launcherRuns ? '' : ' and 1 for the replication launcher'}`;
    case 'max_replication_slots': return `max_replication_slots = ${settings.maxReplicationSlots}, ${settings.replicationSlotsUsed} in use by others`;
    default: return `max_wal_senders = ${settings.maxWalSenders}, ${settings.walSendersUsed} in use by others`;
  }
}

/**
 * Judges a node's settings for what an online plan asks of it at once (pure):
 * the preflight of `rebalance` and `resume`, the coordinator and `reshard
 * doctor` share it, so they never disagree about what a node needs. A node
 * that cannot carry even one batch in a role it has is an error; one that
 * carries fewer than the plan would like is a warning (the batches take
 * turns), with the settings that would let them all run at once.
 */
export function onlineSettingProblems(nodeName: string, settings: ReplicationSettings, need: OnlineNeed): SettingProblem[] {
  const problems: SettingProblem[] = [];
  if (settings.walLevel !== 'logical') {
    problems.push({ severity: 'error', check: 'wal_level', message: `node "${nodeName}" has wal_level=${settings.walLevel}; online moves need logical`,
      fix: `ALTER SYSTEM SET wal_level = logical; on "${nodeName}", then restart it (the setting takes effect only at server start), or use --mode offline` });
  }
  const delegated = settings.serverVersionNum >= CREATE_SUBSCRIPTION_ROLE_VERSION_NUM_MIN && settings.createSubscriptionGranted && settings.replicationRole;
  if (!settings.superuser && !delegated) {
    problems.push({ severity: 'error', check: 'privileges', message: `node "${nodeName}": the reshard user is not a superuser, which creating subscriptions needs on PostgreSQL 15`,
      fix: 'connect as a superuser (or grant pg_create_subscription and REPLICATION on 16+), or use --mode offline' });
  }
  const capacity = replicationCapacity(settings, need.concurrencyMax);
  const copiesAtOnce = Math.max(1, Math.min(need.concurrencyMax, need.publicationsWanted));
  if (need.subscriptionsWanted > 0 && capacity.subscriptionsMax < need.subscriptionsWanted) {
    const fix = alterCommands(nodeName, raises('target', settings, need.subscriptionsWanted, copiesAtOnce));
    problems.push(capacity.subscriptionsMax === 0
      ? { severity: 'error', check: 'logical_workers',
        message: `node "${nodeName}" can start no apply worker for an online move into it (${describeUse(capacity.subscriptionsBoundBy, settings)}); ${need.subscriptionsWanted} subscription(s) at once need it`,
        fix: `${fix}, or use --mode offline` }
      : { severity: 'warning', check: 'logical_workers',
        message: `node "${nodeName}" takes ${capacity.subscriptionsMax} subscriptions at once (${describeUse(capacity.subscriptionsBoundBy, settings)}), fewer than the ${need.subscriptionsWanted} batches the plan would stream into it: they are merged into fewer, bigger batches or take turns`,
        fix: `to run them as planned: ${fix}` });
  }
  if (need.publicationsWanted > 0 && capacity.publicationsMax < need.publicationsWanted) {
    const fix = alterCommands(nodeName, raises('source', settings, need.publicationsWanted, copiesAtOnce));
    problems.push(capacity.publicationsMax === 0
      ? { severity: 'error', check: 'replication_slots',
        message: `node "${nodeName}" can feed no online move out of it (${describeUse(capacity.publicationsBoundBy, settings)}; each move needs 1 replication slot and 2 WAL senders while it copies); ${need.publicationsWanted} publication(s) at once need them`,
        fix: `${fix}, or use --mode offline` }
      : { severity: 'warning', check: 'replication_slots',
        message: `node "${nodeName}" feeds ${capacity.publicationsMax} publications at once (${describeUse(capacity.publicationsBoundBy, settings)}), fewer than the ${need.publicationsWanted} batches the plan would stream out of it: they are merged into fewer, bigger batches or take turns`,
        fix: `to run them as planned: ${fix}` });
  }
  // Logical replication workers (and their launcher) are taken from max_worker_processes.
  if (need.subscriptionsWanted > 0 && settings.maxWorkerProcesses < settings.maxLogicalReplicationWorkers + 1 && capacity.subscriptionsBoundBy !== 'max_worker_processes') {
    problems.push({ severity: 'warning', check: 'logical_workers',
      message: `node "${nodeName}": max_worker_processes=${settings.maxWorkerProcesses} leaves no room for ${settings.maxLogicalReplicationWorkers} logical replication workers and their launcher`,
      fix: alterCommands(nodeName, [{ name: 'max_worker_processes', value: settings.maxLogicalReplicationWorkers + 1 }]) });
  }
  if (need.subscriptionsWanted > 0 && settings.walRetrieveRetryIntervalMs > WAL_RETRIEVE_RETRY_INTERVAL_MS_MAX) {
    problems.push({ severity: 'warning', check: 'wal_retrieve_retry_interval',
      message: `node "${nodeName}": wal_retrieve_retry_interval is ${settings.walRetrieveRetryIntervalMs} ms, which delays each new subscription's worker start`,
      fix: `ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'; SELECT pg_reload_conf(); on "${nodeName}" (a reload is enough) so back-to-back subscriptions start at once` });
  }
  return problems;
}

