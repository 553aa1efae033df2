import type pg from 'pg';
import { dropPublication, dropReplicationSlot, dropSubscription, migrationReplicationPrefix, reshardReplicationObjects } from '../node/replication.js';
import type { MoveStep, SlotMoveBase } from './moveStep.js';
import { cleanupStep, prepareStep, takenBackOnly, undoAttach, undoFreeze } from './sharedSteps.js';
import { catalogStepJournal } from './stepJournal.js';
import { StepRunner } from './stepRunner.js';

/** One move of a migration being taken back, with sessions on both of its nodes. */
export interface RevertContext extends SlotMoveBase {
  slot: number;
}

/**
 * The rollback in place, as a declared list: what an unswitched move may have
 * left on its nodes, whichever mover ran it (the replication objects go
 * migration-wide first, `dropMigrationReplication`), taken back in reverse by
 * the step runner with the undos every mover uses.
 */
export const UNDO_IN_PLACE_STEPS: readonly MoveStep<SlotMoveBase>[] = [prepareStep, takenBackOnly('freeze', undoFreeze), takenBackOnly('attach', undoAttach)];

/** After the switch: the cleanup, the one every mover runs. */
export const FINISH_SWITCHED_STEPS: readonly MoveStep<SlotMoveBase>[] = [cleanupStep];

/**
 * Undo of a move that never switched, wherever it stopped and whichever
 * mover ran it: the target's copy detached and dropped, the source's leaves
 * unfenced, the slot active again on its unchanged owner. Every part is
 * idempotent, so an interrupted undo is simply run again.
 */
export async function undoUnswitchedMove(context: RevertContext, reason: string): Promise<void> {
  const journal = catalogStepJournal(context.catalog, context.migrationId);
  const runner = await StepRunner.open(journal, [context.slot], () => {});
  await runner.undo(UNDO_IN_PLACE_STEPS, context, [context.slot], { reason });
  await journal.moveState(context.slot, { state: 'rolled_back', error: reason });
}

/**
 * The cleanup a switched move may not have finished (its coordinator stopped
 * after the switch): the CHECK on the new owner, the old owner's leaves.
 * Idempotent. Needed before a move back, which stages leaves of that name.
 */
export async function finishSwitchedMove(context: RevertContext): Promise<void> {
  const journal = catalogStepJournal(context.catalog, context.migrationId);
  // Run again even when the journal says done: a cleanup is idempotent, and the leaves must be gone before a move back.
  const runner = await StepRunner.open({ ...journal, completed: async () => new Set() }, [context.slot], () => {});
  await runner.run(FINISH_SWITCHED_STEPS, context, [context.slot], { facts: () => ({ by: 'rollback' }) });
  await journal.moveState(context.slot, { state: 'done' });
}

/**
 * Drops a migration's subscriptions (on every node first, so no apply worker
 * holds a slot), then its replication slots and publications. Returns what
 * was dropped.
 */
export async function dropMigrationReplication(nodes: readonly pg.ClientBase[], migrationId: number): Promise<string[]> {
  const prefix = migrationReplicationPrefix(migrationId);
  const dropped: string[] = [];
  for (const node of nodes) {
    for (const name of (await reshardReplicationObjects(node)).subscriptions.filter((candidate) => candidate.startsWith(prefix))) {
      await dropSubscription(node, name);
      dropped.push(`subscription ${name}`);
    }
  }
  for (const node of nodes) {
    const objects = await reshardReplicationObjects(node);
    for (const name of objects.slots.filter((candidate) => candidate.startsWith(prefix))) {
      await dropReplicationSlot(node, name);
      dropped.push(`replication slot ${name}`);
    }
    for (const name of objects.publications.filter((candidate) => candidate.startsWith(prefix))) {
      await dropPublication(node, name);
      dropped.push(`publication ${name}`);
    }
  }
  return dropped;
}
