import type pg from 'pg';
import { unfinishedAdoption } from '../catalog/adoptions.js';
import { ReshardError } from '../core/errors.js';

/**
 * Refuses a change of the node set (`node add`, `node remove`) while an
 * adoption is unfinished: the adoption created the table's staged parent on
 * the nodes it found at its start and routes rows by the slot owners of that
 * moment, so a node added under it would never get the table, and a node
 * removed would keep a half-made one. (A rebalance is refused already: the
 * adoption holds the single running-migration place.)
 */
export async function assertNoAdoptionUnderway(catalog: pg.ClientBase, action: string): Promise<void> {
  const adoption = await unfinishedAdoption(catalog);
  if (!adoption) return;
  throw new ReshardError('conflict', `cannot ${action} while adoption ${adoption.migrationId} of ${adoption.name} is unfinished (its nodes are fixed at its start)`,
    'let it finish (`reshard status`; `reshard resume` if it was interrupted) or `reshard rollback` it, then try again');
}
