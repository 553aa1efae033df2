import { adoptionToResume, adoptTable, describeAdoptSteps, resumeAdoption, type AdoptResult } from '../../admin/adoptTable.js';
import { forgetAdoptedSource } from '../../admin/forgetAdoptedSource.js';
import { adoptionToRollBack, rollbackAdoption } from '../../admin/rollbackAdoption.js';
import { badInput } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';

export interface AdoptOptions { from?: string; key?: string; colocateWith?: string; schema?: string; dryRun?: boolean }

function report(output: Output, result: AdoptResult): void {
  output.result({ migration_id: result.migrationId, table: result.table, sources: result.sources, rows: result.rows, kept_as: result.keptName });
  output.text(`Adopted ${result.table} (migration ${result.migrationId}): ${result.rows} rows from ${result.sources.join(', ')} now sharded over the cluster.`);
  output.text(`The old table stays fenced until \`reshard table forget-source ${result.table}\`; until then \`reshard rollback\` takes the adoption back.`);
}

/** `reshard table adopt TABLE --from URL[,URL…] --key COL [--colocate-with T]`. */
export async function adoptCommand(output: Output, access: ClusterAccess, name: string, options: AdoptOptions): Promise<void> {
  if (options.dryRun) {
    const steps = describeAdoptSteps(name);
    output.result({ table: name, steps });
    output.text(`Adopting ${name} takes these steps (journaled; \`reshard resume\` continues them, a failure before the switch undoes them):`);
    for (const { step, description } of steps) output.text(`  ${step}: ${description}`);
    return;
  }
  if (!options.from) throw badInput('table adopt needs the server(s) that hold the table', 'pass --from URL (several: --from URL1,URL2)');
  if (!options.key) throw badInput('table adopt needs the shard key', 'pass --key COLUMN');
  const result = await adoptTable(access, {
    name,
    from: options.from.split(',').map((url) => url.trim()).filter(Boolean),
    keyColumn: options.key.trim(),
    ...(options.schema ? { schema: options.schema } : {}),
    ...(options.colocateWith ? { colocateWith: options.colocateWith } : {}),
    emit: (event) => { if (event.action === 'begin' || event.action === 'undo') output.text(`  ${event.action === 'begin' ? 'step' : 'undo'} ${event.step}`); },
  });
  report(output, result);
}

/** `reshard table forget-source TABLE`. */
export async function forgetSourceCommand(output: Output, access: ClusterAccess, name: string, options: { schema?: string }): Promise<void> {
  const result = await forgetAdoptedSource(access, { name, ...(options.schema ? { schema: options.schema } : {}) });
  output.result({ migration_id: result.migrationId, dropped: result.dropped });
  output.text(result.dropped.length > 0 ? `Dropped the old table: ${result.dropped.join(', ')}.` : 'Nothing left to drop.');
}

/** `reshard resume` when the interrupted migration is an adoption; false when it is not. */
export async function resumeAdoptionIfAny(output: Output, access: ClusterAccess): Promise<boolean> {
  const migrationId = await adoptionToResume(access);
  if (migrationId === undefined) return false;
  report(output, await resumeAdoption(access, migrationId, (event) => { if (event.action === 'begin') output.text(`  step ${event.step}`); }));
  return true;
}

/** `reshard rollback` when the migration to take back is an adoption; false when it is not. */
export async function rollbackAdoptionIfAny(output: Output, access: ClusterAccess, options: { migration?: string }): Promise<boolean> {
  const migrationId = await adoptionToRollBack(access, options.migration === undefined ? undefined : parseWholeNumber(options.migration, '--migration', 1));
  if (migrationId === undefined) return false;
  const result = await rollbackAdoption(access, migrationId);
  output.result({ migration_id: result.migrationId, table: result.table, outcome: result.outcome, keys_returned: result.keysReturned });
  output.text(result.outcome === 'undone'
    ? `Adoption ${result.migrationId} of ${result.table} undone: the old table serves as before.`
    : `Adoption ${result.migrationId} of ${result.table} taken back: ${result.keysReturned} key(s) written since the switch returned to the old table, which serves again.`);
  return true;
}
