import { switchSlotOwner } from '../catalog/slotMap.js';
import { freezeSlotForRouters } from './freezeSlot.js';
import { copySlotLeaf } from '../node/copySlot.js';
import { fenceSlot } from '../node/fence.js';
import { attachSlot, truncateStagedSlotLeaf } from '../node/slotPartitions.js';
import { markSlotMoved } from '../node/slotState.js';
import { getCluster } from '../catalog/cluster.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { CopyGate } from '../node/copyMeter.js';
import { describeLeaves, type MoveStep, type SlotMoveBase } from './moveStep.js';
import { settleCopyProgress } from './settleCopyProgress.js';
import { cleanupStep, prepareStep, undoAttach, undoFreeze } from './sharedSteps.js';
import { verifySlotCopy } from './verifySlotCopy.js';

/** Everything one offline move's steps need: the slot, its size, and open sessions. */
export interface OfflineMoveContext extends SlotMoveBase {
  slot: number;
  bytesTotal: number;
  emit: MigrationEventSink;
  /** Paces the copy (rate cap, holds); unpaced when absent. */
  copyGate?: CopyGate;
  /** Facts steps pass forward (copied bytes, rows), recorded in the journal. */
  facts: Record<string, number>;
}

type OfflineStep = MoveStep<OfflineMoveContext>;

const leaves = describeLeaves;

const freeze: OfflineStep = {
  name: 'freeze',
  describe: (view) => `catalog: slot ${view.slot} frozen (epoch + 1); on ${view.sourceName}: fence ${leaves(view)} with a trigger that rejects writes (SQLSTATE RSM01), after in-flight writers finish`,
  async do(context) {
    const frozen = await freezeSlotForRouters(context.catalog, context.slot);
    const fence = await fenceSlot(context.source, context.tables, context.slot, context.modulus, { epoch: frozen.epoch });
    context.facts['freezeEpoch'] = frozen.epoch;
    context.facts['freezeRoundTrips'] = frozen.roundTrips + fence.roundTrips;
    context.facts['freezeEndedSessions'] = fence.ended.length;
  },
  undo: (context, slots) => undoFreeze(context, slots, () => context.facts['freezeEpoch'] ?? 0),
};

const copy: OfflineStep = {
  name: 'copy',
  describe: (view) => `stream ${leaves(view)} ${view.sourceName} → ${view.targetName} with COPY (FORMAT binary), no staging files`,
  async do(context) {
    let bytesBefore = 0;
    let rows = 0;
    for (const table of context.tables) {
      // Idempotent: a copy interrupted halfway starts that table again.
      await truncateStagedSlotLeaf(context.target, table, context.slot, context.modulus);
      const copied = await copySlotLeaf(context.source, context.target, table, context.slot, context.modulus, (bytes) => {
        // The COPY stream is smaller than the slot on disk (no indexes): progress never claims more than the slot.
        context.emit({ type: 'bytes', migrationId: context.migrationId, slot: context.slot, bytesCopied: Math.min(bytesBefore + bytes, context.bytesTotal), bytesTotal: context.bytesTotal });
      }, context.copyGate);
      bytesBefore += copied.bytes;
      rows += copied.rows;
    }
    await settleCopyProgress(context.copyGate, bytesBefore, context.bytesTotal, (bytesCopied) => {
      context.emit({ type: 'bytes', migrationId: context.migrationId, slot: context.slot, bytesCopied, bytesTotal: context.bytesTotal });
    });
    context.facts['bytesStreamed'] = bytesBefore;
    context.facts['rowsCopied'] = rows;
  },
  async undo(context) {
    for (const table of context.tables) await truncateStagedSlotLeaf(context.target, table, context.slot, context.modulus);
  },
};

const verify: OfflineStep = {
  name: 'verify',
  describe: (view) => `compare row count and order-independent checksum of ${leaves(view)} on ${view.sourceName} and ${view.targetName}`,
  async do(context) {
    const { rowsByTable } = await verifySlotCopy(context, context.slot, 'the copy');
    for (const [table, rows] of rowsByTable) context.facts[`rows:${table}`] = rows;
  },
};

const attach: OfflineStep = {
  name: 'attach',
  describe: (view) => `on ${view.targetName}: ATTACH ${leaves(view)} (proven by the CHECK, no scan)`,
  async do(context) {
    const epoch = context.facts['freezeEpoch'] ?? (await getCluster(context.catalog)).epoch;
    await attachSlot(context.target, context.tables, context.slot, context.modulus, undefined, epoch);
  },
  undo: undoAttach,
};

const switchOwner: OfflineStep = {
  name: 'switch',
  describe: (view) => `catalog, one transaction: slot ${view.slot} owner := ${view.targetName}, state active, epoch + 1, NOTIFY (the point of no return); on ${view.sourceName}: slot state moved → ${view.targetName}`,
  pointOfNoReturn: true,
  async do(context) {
    const epoch = await switchSlotOwner(context.catalog, context.slot, context.sourceName, context.targetName);
    // After the catalog's switch: the source's tombstone redirects stale routes, also after cleanup. It must not
    // fail this step (the catalog has switched; a failure would be undone as if it had not): cleanup writes it too.
    await markSlotMoved(context.source, context.slot, context.targetName, epoch).catch(() => {});
  },
};

/** The offline mover: the design's step machine with a fenced COPY instead of replication. */
export const OFFLINE_MOVE_STEPS: readonly OfflineStep[] = [prepareStep, freeze, copy, verify, attach, switchOwner, cleanupStep];
