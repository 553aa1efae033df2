import type pg from 'pg';
import { appendJournal } from '../catalog/journal.js';
import { updateMove } from '../catalog/migrationRuns.js';
import { setSlotState } from '../catalog/slotMap.js';
import { unfenceSlot } from '../node/fence.js';
import { markSlotMoved, markSlotNotAttached } from '../node/slotState.js';
import { getCluster } from '../catalog/cluster.js';
import { dropPublication, dropReplicationSlot, dropSubscription, migrationReplicationPrefix, reshardReplicationObjects } from '../node/replication.js';
import {
  detachAndDropSlotLeaf, detachSlotLeafForUndo, dropSlotBoundConstraint, dropStagedSlotLeaf, type SlotTable,
} from '../node/slotPartitions.js';

/** One move of a migration being taken back, with sessions on both of its nodes. */
export interface RevertContext {
  migrationId: number;
  slot: number;
  modulus: number;
  tables: readonly SlotTable[];
  sourceName: string;
  targetName: string;
  source: pg.ClientBase;
  target: pg.ClientBase;
  catalog: pg.ClientBase;
}

/**
 * Undo of a move that never switched, wherever it stopped and whichever
 * mover ran it: the target's copy detached and dropped, the source's leaves
 * unfenced, the slot active again on its unchanged owner. Every part is
 * idempotent, so an interrupted undo is simply run again.
 */
export async function undoUnswitchedMove(context: RevertContext, reason: string): Promise<void> {
  const { migrationId, slot, tables, modulus, source, target, catalog } = context;
  await appendJournal(catalog, { migrationId, slot, step: 'rollback', action: 'undo', detail: { reason } });
  // First: the target's slot state never says 'owned' for leaves that are not attached; a stale route there goes back to the source.
  await markSlotNotAttached(target, slot, context.sourceName, (await getCluster(catalog)).epoch);
  for (const table of tables) {
    await detachSlotLeafForUndo(target, table, slot, modulus);
    await dropStagedSlotLeaf(target, table, slot, modulus);
  }
  await unfenceSlot(source, tables, slot, modulus);
  await setSlotState(catalog, slot, 'active');
  await appendJournal(catalog, { migrationId, slot, step: 'rollback', action: 'undone' });
  await updateMove(catalog, migrationId, slot, { state: 'rolled_back', error: reason });
}

/**
 * The cleanup a switched move may not have finished (its coordinator stopped
 * after the switch): the CHECK on the new owner, the old owner's leaves.
 * Idempotent. Needed before a move back, which stages leaves of that name.
 */
export async function finishSwitchedMove(context: RevertContext): Promise<void> {
  const { migrationId, slot, tables, modulus, source, target, catalog } = context;
  // The switch may have stopped between the catalog and the source's tombstone: written before the leaves go.
  await markSlotMoved(source, slot, context.targetName, (await getCluster(catalog)).epoch);
  for (const table of tables) {
    await dropSlotBoundConstraint(target, table, slot, modulus);
    await detachAndDropSlotLeaf(source, table, slot, modulus);
  }
  await appendJournal(catalog, { migrationId, slot, step: 'cleanup', action: 'done', detail: { by: 'rollback' } });
  await updateMove(catalog, migrationId, slot, { state: 'done' });
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
