import { ReshardError } from '../core/errors.js';
import { switchSlotOwner, setSlotState } from '../catalog/slotMap.js';
import { freezeSlotForRouters } from './freezeSlot.js';
import { copySlotLeaf } from '../node/copySlot.js';
import { fenceSlot, unfenceSlot } from '../node/fence.js';
import {
  attachSlot, detachAndDropSlotLeaf, detachSlotLeafForUndo, dropSlotBoundConstraint,
  dropStagedSlotLeaf, stageSlotLeaves, truncateStagedSlotLeaf,
} from '../node/slotPartitions.js';
import { slotStatsOnBoth } from '../node/slotStats.js';
import { markSlotMoved, markSlotNotAttached } from '../node/slotState.js';
import { getCluster } from '../catalog/cluster.js';
import { describeLeaves, type MoveContext, type MoveStep } from './moveStep.js';
import { settleCopyProgress } from './settleCopyProgress.js';

const leaves = describeLeaves;

const prepare: MoveStep = {
  name: 'prepare',
  describe: (view) => `on ${view.targetName}: create ${leaves(view)} standalone, shaped like the parents, with CHECK satisfies_hash_partition(parent, ${view.modulus}, ${view.slot}, key)`,
  async do(context) {
    await stageSlotLeaves(context.target, context.tables, [context.slot], context.modulus);
  },
  async undo(context) {
    for (const table of context.tables) await dropStagedSlotLeaf(context.target, table, context.slot, context.modulus);
  },
};

const freeze: MoveStep = {
  name: 'freeze',
  describe: (view) => `catalog: slot ${view.slot} frozen (epoch + 1); on ${view.sourceName}: fence ${leaves(view)} with a trigger that rejects writes (SQLSTATE RSM01), after in-flight writers finish`,
  async do(context) {
    const frozen = await freezeSlotForRouters(context.catalog, context.slot);
    const fence = await fenceSlot(context.source, context.tables, context.slot, context.modulus, { epoch: frozen.epoch });
    context.facts['freezeEpoch'] = frozen.epoch;
    context.facts['freezeRoundTrips'] = frozen.roundTrips + fence.roundTrips;
    context.facts['freezeEndedSessions'] = fence.ended.length;
  },
  async undo(context) {
    await unfenceSlot(context.source, context.tables, context.slot, context.modulus, context.facts['freezeEpoch'] ?? 0);
    await setSlotState(context.catalog, context.slot, 'active');
  },
};

const copy: MoveStep = {
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

const verify: MoveStep = {
  name: 'verify',
  describe: (view) => `compare row count and order-independent checksum of ${leaves(view)} on ${view.sourceName} and ${view.targetName}`,
  async do(context) {
    const { onSource: sourceStats, onTarget: targetStats } = await slotStatsOnBoth(context.source, context.target, context.tables, context.slot, context.modulus);
    for (const [index, table] of context.tables.entries()) {
      const onSource = sourceStats[index]!;
      const onTarget = targetStats[index]!;
      if (onSource.rows !== onTarget.rows || onSource.checksum !== onTarget.checksum) {
        throw new ReshardError(
          'verification_failed',
          `slot ${context.slot} of ${table.name} differs after the copy: ${context.sourceName} has ${onSource.rows} rows, ${context.targetName} has ${onTarget.rows} (checksums ${onSource.checksum === onTarget.checksum ? 'equal' : 'differ'})`,
          'the move was rolled back; run `reshard rebalance` again and report this if it repeats',
        );
      }
      context.facts[`rows:${table.name}`] = onTarget.rows;
    }
  },
};

const attach: MoveStep = {
  name: 'attach',
  describe: (view) => `on ${view.targetName}: ATTACH ${leaves(view)} (proven by the CHECK, no scan)`,
  async do(context) {
    const epoch = context.facts['freezeEpoch'] ?? (await getCluster(context.catalog)).epoch;
    await attachSlot(context.target, context.tables, context.slot, context.modulus, undefined, epoch);
  },
  async undo(context) {
    // First: the target's slot state never says 'owned' for leaves that are not attached; a stale route there goes back to the source.
    await markSlotNotAttached(context.target, context.slot, context.sourceName, (await getCluster(context.catalog)).epoch);
    for (const table of context.tables) await detachSlotLeafForUndo(context.target, table, context.slot, context.modulus);
  },
};

const switchOwner: MoveStep = {
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

const cleanup: MoveStep = {
  name: 'cleanup',
  describe: (view) => `on ${view.targetName}: drop the slot-bound CHECK; on ${view.sourceName}: DETACH ${leaves(view)} CONCURRENTLY, then DROP them`,
  async do(context: MoveContext) {
    await markSlotMoved(context.source, context.slot, context.targetName, (await getCluster(context.catalog)).epoch);
    for (const table of context.tables) {
      await dropSlotBoundConstraint(context.target, table, context.slot, context.modulus);
      await detachAndDropSlotLeaf(context.source, table, context.slot, context.modulus);
    }
  },
};

/** The offline mover: the design's step machine with a fenced COPY instead of replication. */
export const OFFLINE_MOVE_STEPS: readonly MoveStep[] = [prepare, freeze, copy, verify, attach, switchOwner, cleanup];
