import type pg from 'pg';
import type { NodeRecord } from '../catalog/nodes.js';
import { formatBytes } from '../core/bytes.js';
import { ReshardError } from '../core/errors.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { replicationSlotHealth, type ReplicationSlotHealth } from '../node/replication.js';
import type { CopyThrottle } from './copyThrottle.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';

export interface ReplicationWatchLimits {
  /** Copying is held while a streaming subscription lags more than this, and resumes below half of it. */
  lagBytesMax: number;
  /** WAL a source may retain for the migration's replication slots; past it the migration stops (the disk is at stake). */
  walRetainedBytesMax: number;
  pollMs: number;
}

export const REPLICATION_WATCH_DEFAULT: ReplicationWatchLimits = {
  lagBytesMax: 256 * 1024 * 1024,
  walRetainedBytesMax: 8 * 1024 ** 3,
  pollMs: 1_000,
};

/**
 * While an online migration copies, polls its replication slots on every
 * source: holds every copy while a subscription that already streams falls
 * behind (the copies' load is what it competes with) and releases them once
 * it catches up; stops the migration if a source retains more WAL than
 * allowed. Returns a function that stops the watch.
 */
export function watchReplication(options: {
  migrationId: number;
  prefix: string;
  sources: readonly NodeRecord[];
  passwords: PasswordLookup;
  throttle: CopyThrottle;
  limits: ReplicationWatchLimits;
  emit: MigrationEventSink;
}): () => Promise<void> {
  const { throttle, limits, emit, migrationId } = options;
  const sessions = new Map<string, pg.Client>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const pollOnce = async (): Promise<void> => {
    const observed: ObservedSlot[] = [];
    for (const node of options.sources) {
      let session = sessions.get(node.name);
      if (!session) {
        session = await connectNode(node, options.passwords, 'reshard watch');
        if (stopped) {
          await session.end().catch(() => {});
          return;
        }
        sessions.set(node.name, session);
      }
      for (const slot of await replicationSlotHealth(session, options.prefix)) observed.push({ node: node.name, ...slot });
    }
    const decision = decideThrottle(observed, limits, throttle.heldFor !== undefined);
    if (decision.stop) throttle.fail(decision.stop);
    if (decision.hold) {
      if (throttle.heldFor === undefined) emit({ type: 'throttle', migrationId, state: 'held', reason: decision.hold });
      throttle.hold(decision.hold);
    }
    if (decision.release) {
      throttle.release();
      emit({ type: 'throttle', migrationId, state: 'released', reason: decision.release });
    }
  };

  const loop = (): void => {
    if (stopped) return;
    // A failed poll (a source briefly unreachable) is not the watch's to report: the movers see it.
    void pollOnce().catch(() => {}).finally(() => {
      if (!stopped) timer = setTimeout(loop, limits.pollMs);
    });
  };
  loop();

  let stopping: Promise<void> | undefined;
  // Idempotent: the caller stops it when copies end and again on any way out.
  return () => {
    stopping ??= (async () => {
      stopped = true;
      clearTimeout(timer);
      await Promise.all([...sessions.values()].map((session) => session.end().catch(() => {})));
    })();
    return stopping;
  };
}

export interface ObservedSlot extends ReplicationSlotHealth {
  node: string;
}

/**
 * What the watch does about what it saw (pure): stop when a source retains
 * too much WAL; hold copying while the worst streaming subscription lags over
 * the bound; release only once it is under half of it, so copying does not
 * flap at the edge.
 */
export function decideThrottle(
  observed: readonly ObservedSlot[],
  limits: Pick<ReplicationWatchLimits, 'lagBytesMax' | 'walRetainedBytesMax'>,
  held: boolean,
): { stop?: ReshardError; hold?: string; release?: string } {
  const overRetained = observed.find((slot) => slot.retainedBytes > limits.walRetainedBytesMax);
  const stop = overRetained ? new ReshardError('aborted',
    `${overRetained.node} retains ${formatBytes(overRetained.retainedBytes)} of WAL for ${overRetained.slotName}, over the ${formatBytes(limits.walRetainedBytesMax)} limit`,
    'the migration stopped to protect the source\'s disk; lower the write load or raise --max-wal-retained, then `reshard resume`') : undefined;
  let worst: ObservedSlot | undefined;
  for (const slot of observed) if (slot.lagBytes !== undefined && slot.lagBytes > (worst?.lagBytes ?? -1)) worst = slot;
  const worstLagBytes = worst?.lagBytes ?? 0;
  if (worst && worstLagBytes > limits.lagBytesMax) {
    return { ...(stop ? { stop } : {}), hold: `${worst.slotName} on ${worst.node} lags ${formatBytes(worstLagBytes)}, over ${formatBytes(limits.lagBytesMax)}` };
  }
  if (held && worstLagBytes < limits.lagBytesMax / 2) {
    return { ...(stop ? { stop } : {}), release: `replication lag back under ${formatBytes(limits.lagBytesMax / 2)}` };
  }
  return stop ? { stop } : {};
}
