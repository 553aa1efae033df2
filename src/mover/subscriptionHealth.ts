import { ReshardError } from '../core/errors.js';
import type { ReplicationSlotStatus, SubscriptionWorkerStatus } from '../node/replicationStatus.js';

/**
 * Shortest time a subscription may go without an apply worker before the
 * move gives up. A new subscription's worker is started by the launcher,
 * which starts workers at most once per wal_retrieve_retry_interval (on
 * PostgreSQL 15 for all subscriptions together; 5 s by default) and restarts
 * one that exited after as long again: a healthy worker shows up within one
 * or two intervals (measured on stock 15: ~5 s; with 100 ms: well under 1 s).
 * 15 s is three stock intervals: past it, the server is not going to start
 * one, and waiting longer only hides why.
 */
export const NO_APPLY_WORKER_MS_MIN = 15_000;

/** How long this server may take to start an apply worker, from its launcher's retry interval. */
export function noApplyWorkerBoundMs(walRetrieveRetryIntervalMs: number): number {
  return Math.max(NO_APPLY_WORKER_MS_MIN, 3 * walRetrieveRetryIntervalMs);
}

export interface SubscriptionObservation {
  subscription: string;
  targetName: string;
  sourceName: string;
  target: SubscriptionWorkerStatus;
  slot: ReplicationSlotStatus;
  /** Errors counted when the wait began: only new ones are this move's. */
  errorsAtStart: { apply: number; sync: number };
  /** Time since the wait began or the subscription was last seen streaming (an apply worker, its slot active), whichever is later. */
  notStreamingMs: number;
}

const RESUME = 'then `reshard resume` (the move was rolled back)';

/**
 * Why a subscription a move waits on cannot make progress, from what the
 * servers report (pure): disabled, its worker stopping on errors, its slot
 * gone, or no apply worker for longer than the launcher needs — with the
 * likely cause from the settings and the fix. Undefined while it may still
 * come. The server log itself is not readable over SQL; the views and
 * settings name the cause in the cases seen so far.
 */
export function subscriptionFailure(observation: SubscriptionObservation): ReshardError | undefined {
  const { subscription, targetName, sourceName, target, slot } = observation;
  const on = `the subscription ${subscription} on node "${targetName}"`;
  if (!target.exists) {
    return new ReshardError('aborted', `${on} is gone (someone dropped it while the move waited on it)`, `leave reshard's objects to reshard; ${RESUME}`);
  }
  if (!target.enabled) {
    return new ReshardError('aborted', `${on} is disabled (pg_subscription.subenabled = false)`,
      `find who disabled it (disable_on_error or ALTER SUBSCRIPTION … DISABLE; "${targetName}"'s server log says), ${RESUME}`);
  }
  const applyErrors = target.applyErrorCount - observation.errorsAtStart.apply;
  const syncErrors = target.syncErrorCount - observation.errorsAtStart.sync;
  if (applyErrors > 0 || syncErrors > 0) {
    return new ReshardError('aborted',
      `${on} stopped on errors (pg_stat_subscription_stats: apply_error_count = ${target.applyErrorCount}, sync_error_count = ${target.syncErrorCount})`,
      `"${targetName}"'s server log names the error (usually a row that already exists on the target, or a table or right missing there); fix it, ${RESUME}`);
  }
  if (!slot.exists || slot.lost) {
    return new ReshardError('aborted', `the replication slot ${subscription} on node "${sourceName}" ${slot.exists ? 'lost the WAL it needs (wal_status = lost)' : 'is gone'}`,
      `${slot.exists ? 'raise max_slot_wal_keep_size on the source' : 'leave reshard\'s replication slots to reshard'}, ${RESUME}`);
  }
  if (target.workerPid !== undefined && slot.active) return undefined;
  const boundMs = noApplyWorkerBoundMs(target.walRetrieveRetryIntervalMs);
  if (observation.notStreamingMs < boundMs) return undefined;
  const seconds = Math.round(observation.notStreamingMs / 1000);
  if (target.workerPid !== undefined) {
    const senders = `max_wal_senders = ${slot.maxWalSenders}, ${slot.walSendersUsed} in use`;
    if (slot.walSendersUsed >= slot.maxWalSenders) {
      return new ReshardError('aborted', `${on} has an apply worker but has not streamed from node "${sourceName}" for ${seconds} s (${senders} there): the source is out of WAL senders`,
        `ALTER SYSTEM SET max_wal_senders = ${slot.walSendersUsed + 1}; on "${sourceName}" and restart it (or stop what else streams from it), ${RESUME}`);
    }
    return new ReshardError('aborted', `${on} has an apply worker but has not streamed from node "${sourceName}" for ${seconds} s (its replication slot there stays inactive; ${senders})`,
      `"${targetName}"'s server log says why (often "${sourceName}"'s pg_hba.conf for replication connections, or a password); fix it, ${RESUME}`);
  }
  const workers = `max_logical_replication_workers = ${target.maxLogicalReplicationWorkers}, ${target.logicalWorkersUsed} in use`;
  const processes = `max_worker_processes = ${target.maxWorkerProcesses}, ${target.backgroundWorkersUsed} in use`;
  const waiting = Math.max(1, target.reshardSubscriptionsWithoutWorker);
  if (target.logicalWorkersUsed >= target.maxLogicalReplicationWorkers) {
    return new ReshardError('aborted', `${on} has no apply worker after ${seconds} s (${workers}): the server is out of logical replication worker slots`,
      `ALTER SYSTEM SET max_logical_replication_workers = ${target.logicalWorkersUsed + waiting}; on "${targetName}" and restart it (or stop what else uses its workers), ${RESUME}`);
  }
  if (target.backgroundWorkersUsed >= target.maxWorkerProcesses) {
    return new ReshardError('aborted', `${on} has no apply worker after ${seconds} s (${processes}): the server is out of background worker slots`,
      `ALTER SYSTEM SET max_worker_processes = ${target.backgroundWorkersUsed + waiting}; on "${targetName}" and restart it (or stop what else uses its background workers), ${RESUME}`);
  }
  if (slot.active) {
    return new ReshardError('aborted', `${on} has no apply worker after ${seconds} s while another process streams from its replication slot on "${sourceName}"`,
      `find and stop that process (pg_stat_replication on "${sourceName}"), ${RESUME}`);
  }
  return new ReshardError('aborted', `${on} has no apply worker after ${seconds} s (${workers}; ${processes}; its worker exits at once)`,
    `"${targetName}"'s server log says why; fix it, ${RESUME}`);
}
