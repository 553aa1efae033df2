import { peerConnectionOf } from '../catalog/nodes.js';
import type { MoveRecord } from '../catalog/migrationRuns.js';
import { markMovesCopied } from '../catalog/migrationRuns.js';
import { waitFor, withTimeout } from '../plumbing/waitFor.js';
import { quoteQualified } from '../core/identifier.js';
import { leafName } from '../node/leafName.js';
import {
  dropReplicationSlot, ensurePublication, ensureSubscription, replicationLagBytes, subscriptionExists,
} from '../node/replication.js';
import { replicationSlotStatus, subscriptionWorkerStatus } from '../node/replicationStatus.js';
import { copyLeavesAtSnapshot, createSlotWithExportedSnapshot } from '../node/snapshotCopy.js';
import type { OnlineBatch, OnlineBatchConnections, OnlineBatchOptions, OnlineLimits } from './onlineBatchShape.js';
import { settleCopyProgress } from './settleCopyProgress.js';
import { subscriptionFailure } from './subscriptionHealth.js';

/** How often a wait on a subscription asks the servers whether it can make progress at all. */
const SUBSCRIPTION_CHECK_MS = 1_000;
/**
 * The catch-up looks at the lag again after about the time an apply worker
 * takes to replay what is left at this rate (bytes per ms; a slow one on a
 * loaded node), within these bounds: a batch far behind is not asked a
 * hundred times a second (each look reads pg_stat_replication on the source,
 * which walks every backend), one nearly there is seen there within 10 ms.
 */
const CATCH_UP_REPLAY_BYTES_PER_MS = 10_000;
const CATCH_UP_POLL_MS_MIN = 10;
const CATCH_UP_POLL_MS_MAX = 100;

/**
 * Waits until the subscription's apply worker is close to the source's WAL.
 * Meanwhile, about every second, asks the target whether the subscription can
 * get there at all (an apply worker runs, it is enabled, it counts no errors)
 * and the source whether its slot is still there and streamed from: a move the server cannot
 * carry fails within seconds with the server's reason, not at the timeout.
 */
export async function catchUp(batch: OnlineBatch, connections: OnlineBatchConnections, limits: OnlineLimits): Promise<void> {
  const { source, target } = connections;
  const first = await subscriptionWorkerStatus(target, batch.name);
  const errorsAtStart = { apply: first.applyErrorCount, sync: first.syncErrorCount };
  let streamingSeenMs = performance.now();
  let checkedMs = performance.now();
  let nextLookMs = CATCH_UP_POLL_MS_MIN;
  await waitFor(`catch-up of ${batch.name} to within ${limits.catchupLagBytesMax} bytes`, async () => {
    const lag = await replicationLagBytes(source, batch.name);
    if (lag !== undefined && lag <= limits.catchupLagBytesMax) return true;
    const replayMs = ((lag ?? 0) - limits.catchupLagBytesMax) / CATCH_UP_REPLAY_BYTES_PER_MS;
    nextLookMs = Math.min(CATCH_UP_POLL_MS_MAX, Math.max(CATCH_UP_POLL_MS_MIN, replayMs));
    const now = performance.now();
    if (now - checkedMs >= SUBSCRIPTION_CHECK_MS) {
      checkedMs = now;
      const status = await subscriptionWorkerStatus(target, batch.name);
      const slot = await replicationSlotStatus(source, batch.name);
      if (status.workerPid !== undefined && slot.active) streamingSeenMs = now;
      const failure = subscriptionFailure({
        subscription: batch.name, targetName: batch.target.name, sourceName: batch.source.name,
        target: status, slot, errorsAtStart, notStreamingMs: now - streamingSeenMs,
      });
      if (failure) throw failure;
    }
    return undefined;
  }, { timeoutMs: limits.catchupTimeoutMs, pollMs: () => nextLookMs, fix: 'its apply worker runs but the source writes faster than the target applies; retry when the load is lower' });
}


/** The stream step of a batch: publication, replication slot with an exported snapshot, parallel COPY at it, subscription, catch-up. */
export async function streamBatch(
  batch: OnlineBatch,
  moves: readonly MoveRecord[],
  connections: OnlineBatchConnections,
  options: OnlineBatchOptions,
): Promise<void> {
  const { source, target } = connections;
  // Each leaf is loaded index-free and then gets its parent's indexes: a sort per index instead of a btree insert per row.
  const leaves = moves.flatMap((move) => batch.tables.map((table) => ({
    schema: table.schema, name: leafName(table.name, move.slot, batch.modulus), indexesOf: quoteQualified(table.schema, table.name),
  })));
  const password = options.passwords(batch.source.name);
  const sourceConnection = { ...batch.source.connection, ...(password !== undefined ? { password } : {}) };
  const targetPassword = options.passwords(batch.target.name);
  const targetConnection = { ...batch.target.connection, ...(targetPassword !== undefined ? { password: targetPassword } : {}) };
  const streamedByLeaf = new Map<string, number>();
  if (!(await subscriptionExists(target, batch.name))) {
    // The publication exists before the slot, so every change after the slot's snapshot is published.
    await ensurePublication(source, batch.name, leaves);
    // A slot left by an interrupted copy has lost its snapshot: start the copy again.
    await dropReplicationSlot(source, batch.name);
    const exported = await createSlotWithExportedSnapshot(sourceConnection, batch.name);
    try {
      const slotOfLeaf = new Map(moves.flatMap((move) => batch.tables.map((table) => [leafName(table.name, move.slot, batch.modulus), move] as const)));
      const reported = new Map<number, number>();
      const copying = copyLeavesAtSnapshot(sourceConnection, targetConnection, exported.snapshotName, leaves, options.limits.copyLanes, (leaf, bytes) => {
        streamedByLeaf.set(leaf.name, bytes);
        const move = slotOfLeaf.get(leaf.name)!;
        const streamed = batch.tables.reduce((sum, table) => sum + (streamedByLeaf.get(leafName(table.name, move.slot, batch.modulus)) ?? 0), 0);
        // The COPY stream is smaller than the slot on disk: progress never claims more than the slot.
        const copied = Math.min(streamed, move.bytesTotal);
        if (copied - (reported.get(move.slot) ?? 0) >= 256 * 1024 || copied === move.bytesTotal) {
          reported.set(move.slot, copied);
          options.emit({ type: 'bytes', migrationId: batch.migrationId, slot: move.slot, bytesCopied: copied, bytesTotal: move.bytesTotal });
        }
      }, options.copyGate);
      await withTimeout(`the initial copy of ${moves.length} slot(s) ${batch.source.name} → ${batch.target.name}`, copying, options.limits.syncTimeoutMs,
        'check both servers\' logs; the move was rolled back');
      // The target reaches the source at the source's peer address, which may differ from the coordinator's.
      await ensureSubscription(target, batch.name, { ...peerConnectionOf(batch.source), ...(password !== undefined ? { password } : {}) }, batch.name, exported.slotName);
    } finally {
      await exported.release();
    }
    // After the snapshot is released and the subscription streams: the wait it may take holds nothing on the source.
    for (const move of moves) {
      const streamed = batch.tables.reduce((sum, table) => sum + (streamedByLeaf.get(leafName(table.name, move.slot, batch.modulus)) ?? 0), 0);
      await settleCopyProgress(options.copyGate, streamed, move.bytesTotal, (bytesCopied) => {
        options.emit({ type: 'bytes', migrationId: batch.migrationId, slot: move.slot, bytesCopied, bytesTotal: move.bytesTotal });
      });
    }
  }
  for (const move of moves) {
    options.emit({ type: 'bytes', migrationId: batch.migrationId, slot: move.slot, bytesCopied: move.bytesTotal, bytesTotal: move.bytesTotal });
  }
  await markMovesCopied(connections.catalog, batch.migrationId, moves.map((move) => move.slot));
  await catchUp(batch, connections, options.limits);
}
