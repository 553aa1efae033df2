import { MOVE_CONCURRENCY_MAX_DEFAULT } from '../../admin/rebalance.js';
import { rollbackMigration } from '../../admin/rollbackMigration.js';
import { rollbackAdoptionIfAny } from './adoptCommands.js';
import { stoppedError } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { MigrationProgress } from '../migrationProgress.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';

export interface RollbackCommandOptions { migration?: string; slot?: string; concurrency?: string }

export async function rollbackCommand(output: Output, access: ClusterAccess, options: RollbackCommandOptions): Promise<void> {
  const migrationId = options.migration === undefined ? undefined : parseWholeNumber(options.migration, '--migration', 1);
  const slot = options.slot === undefined ? undefined : parseWholeNumber(options.slot, '--slot', 0);
  if (slot === undefined && (await rollbackAdoptionIfAny(output, access, options))) return;
  const progress = new MigrationProgress(output);
  const result = await rollbackMigration(access, {
    ...(migrationId !== undefined ? { migrationId } : {}),
    ...(slot !== undefined ? { slot } : {}),
    emit: progress.handle,
    moveConcurrencyMax: parseWholeNumber(options.concurrency, '--concurrency', 1, MOVE_CONCURRENCY_MAX_DEFAULT),
  });
  output.result({
    migration_id: result.migrationId,
    undone_slots: result.undoneSlots,
    moved_back_slots: result.movedBackSlots,
    dropped: result.dropped,
    draining_nodes: result.drainingNodes,
    move_back: result.moveBack ? { migration_id: result.moveBack.migrationId, state: result.moveBack.state, slots_moved: result.moveBack.slotsMoved, ...(result.moveBack.error ? { error: result.moveBack.error } : {}) } : null,
  });
  output.text(`Migration ${result.migrationId}: ${result.undoneSlots.length} unswitched move(s) undone, ${result.movedBackSlots.length} switched slot(s) moved back` +
    (result.moveBack ? ` (migration ${result.moveBack.migrationId} ${result.moveBack.state})` : '') + '.');
  for (const object of result.dropped) output.text(`  dropped ${object}`);
  for (const name of result.drainingNodes) output.text(`  node ${name} is still draining (its \`node remove\` stands): the next \`reshard rebalance\` moves its slots out again`);
  if (result.moveBack?.state === 'failed') {
    throw stoppedError(`moving slots back (migration ${result.moveBack.migrationId})`, result.moveBack.error, 'run `reshard resume`');
  }
}
