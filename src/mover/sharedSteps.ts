import { getCluster } from '../catalog/cluster.js';
import { setSlotState, slotModuliOf } from '../catalog/slotMap.js';
import { unfenceSlot } from '../node/fence.js';
import {
  detachSlotLeafForUndo, dropSwitchedSlotLeaves, dropSlotBoundConstraints, dropStagedSlotLeaf, stageSlotLeaves,
} from '../node/slotPartitions.js';
import { forgetLeafRowSums, untrackLeafStatements, untrackSlotRows } from '../node/slotRowSums.js';
import { quoteQualified } from '../core/identifier.js';
import { leafName } from '../node/leafName.js';
import { markSlotsMoved, markSlotNotAttached } from '../node/slotState.js';
import { describeLeaves, type MoveStep, type SlotMoveBase } from './moveStep.js';

/**
 * What every kind of move shares: the staging of the target's leaves, the
 * undo of a freeze and of an attach, and the cleanup after a switch. Each
 * exists once; the offline and online steps, the rollback in place and the
 * finishing of a switched move all use these.
 */

/** Stages the slots' leaves on the target, standalone with the slot-bound CHECK; undone by dropping them. */
export const prepareStep: MoveStep<SlotMoveBase> = {
  name: 'prepare',
  describe: (view) => `on ${view.targetName}: create ${describeLeaves(view)} standalone, shaped like the parents, with CHECK satisfies_hash_partition(parent, ${view.modulus}, ${view.slot}, key)`,
  async do(context, slots) {
    // One transaction on the target for every slot of the run.
    const moduli = await slotModuliOf(context.catalog, slots);
    await stageSlotLeaves(context.target, context.tables, slots, context.modulus, (slot) => moduli.get(slot) ?? context.modulus);
  },
  async undo(context, slots) {
    for (const slot of slots) {
      // The online mover's row sums of the staged leaves go with them.
      await untrackSlotRows(context.target, context.tables, slot, context.modulus);
      for (const table of context.tables) await dropStagedSlotLeaf(context.target, table, slot, context.modulus);
    }
  },
};

/** The cleanup after a switch, shared by every kind of move (see `cleanUpSwitchedSlots`). */
export const cleanupStep: MoveStep<SlotMoveBase> = {
  name: 'cleanup',
  describe: (view) => `on ${view.targetName}: drop the slot-bound CHECK; on ${view.sourceName}: DROP ${describeLeaves(view)}, a few per transaction under the parent's ACCESS EXCLUSIVE lock (bounded attempts, as the attach)`,
  do: (context, slots) => cleanUpSwitchedSlots(context, slots),
};

/**
 * A step as the rollback in place sees it: only its undo (the step itself
 * was taken by whichever mover ran the move, and is never taken from here).
 */
export function takenBackOnly(name: MoveStep<SlotMoveBase>['name'], undo: NonNullable<MoveStep<SlotMoveBase>['undo']>): MoveStep<SlotMoveBase> {
  return {
    name,
    describe: (view) => `take back the ${name} of slot ${view.slot}`,
    do: () => Promise.reject(new Error(`step ${name} is only taken back by a rollback in place, never taken`)),
    undo,
  };
}

/**
 * Undo of a freeze: the source's leaves unfenced (its slot state thawed at
 * `epoch`), the slot active again in the catalog; the online mover's row sums
 * on the source end (a leaf that stays the source's must not keep summing).
 */
export async function undoFreeze(context: SlotMoveBase, slots: readonly number[], epochOf: (slot: number) => number | undefined = () => undefined): Promise<void> {
  for (const slot of slots) {
    await unfenceSlot(context.source, context.tables, slot, context.modulus, epochOf(slot));
    await untrackSlotRows(context.source, context.tables, slot, context.modulus);
    await setSlotState(context.catalog, slot, 'active');
  }
}

/** Undo of an attach: the target's leaves detached again (they stay, staged, until prepare's undo drops them). */
export async function undoAttach(context: SlotMoveBase, slots: readonly number[]): Promise<void> {
  const epoch = (await getCluster(context.catalog)).epoch;
  for (const slot of slots) {
    // First: the target's slot state never says 'owned' for leaves that are not attached; a stale route there goes back to the source.
    await markSlotNotAttached(context.target, slot, context.sourceName, epoch);
    for (const table of context.tables) await detachSlotLeafForUndo(context.target, table, slot, context.modulus);
  }
}

/** Sessions for one table's share of a cleanup, and their release. */
export interface CleanupSessions {
  source: SlotMoveBase['source'];
  target: SlotMoveBase['target'];
  release(): Promise<void>;
}

/**
 * The cleanup after a switch, for every kind of move: the source's tombstones
 * (before any leaf goes: the switch writes them unless the source was
 * unreachable then), then per table the CHECK on the target and the source's
 * old leaves (a few per lock of the parent: `dropSwitchedSlotLeaves`).
 * With `sessionsFor`, tables run in parallel, each on its own sessions (each
 * table's drops lock only its own parent); without it, one after the other
 * on the move's sessions. Idempotent.
 */
export async function cleanUpSwitchedSlots(
  context: SlotMoveBase,
  slots: readonly number[],
  sessionsFor?: (tableIndex: number) => Promise<CleanupSessions>,
): Promise<void> {
  const epoch = (await getCluster(context.catalog)).epoch;
  // The tombstones of every slot at once: one transaction, one round trip when no routed work is open on them.
  if (slots.length > 0) await markSlotsMoved(context.source, slots, context.targetName, epoch);
  const cleanTable = async (index: number, sessions: Pick<CleanupSessions, 'source' | 'target'>): Promise<void> => {
    const table = context.tables[index]!;
    // The online mover's row sums end on both sides: on the new owner with the CHECK (one lock on its leaf,
    // which serves writes now), on the old one by their rows alone (its fenced leaf goes with its triggers).
    await dropSlotBoundConstraints(sessions.target, table, slots, context.modulus, (slot) => untrackLeafStatements(table, slot, context.modulus));
    await forgetLeafRowSums(sessions.source, slots.map((slot) => quoteQualified(table.schema, leafName(table.name, slot, context.modulus))));
    await dropSwitchedSlotLeaves(sessions.source, table, slots, context.modulus);
  };
  if (!sessionsFor) {
    for (const index of context.tables.keys()) await cleanTable(index, context);
    return;
  }
  await Promise.all([...context.tables.keys()].map(async (index) => {
    const sessions = index === 0 ? { ...context, release: async () => {} } : await sessionsFor(index);
    try {
      await cleanTable(index, sessions);
    } finally {
      await sessions.release();
    }
  }));
}
