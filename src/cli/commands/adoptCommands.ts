import { AdoptionRefused } from '../../admin/adoptionRefused.js';
import { checkAdoption } from '../../admin/adoptPreflight.js';
import { adoptReferenceTable } from '../../admin/adoptReferenceTable.js';
import { HEADROOM_FRACTION_DEFAULT } from '../../admin/clusterSnapshot.js';
import type { ConnectionSettings } from '../../core/connection.js';
import { badInput, type ReshardError } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { parseUrlOption } from '../config.js';
import type { Output } from '../output.js';
import { parsePercent, parseWholeNumber } from '../parseNumbers.js';
import { adoptionToResume, adoptTable, describeAdoptSteps, resumeAdoption, type AdoptResult } from '../../admin/adoptTable.js';
import { forgetAdoptedSource } from '../../admin/forgetAdoptedSource.js';
import { adoptionToRollBack, rollbackAdoption } from '../../admin/rollbackAdoption.js';

export interface AdoptOptions { from?: string; key?: string; colocateWith?: string; schema?: string; reference?: boolean; headroom?: string; dryRun?: boolean; sourceOf?: string }

/** `--from URL[,URL…]`: a password in a URL serves this command only and is never printed. */
function parseSources(from: string | undefined): ConnectionSettings[] {
  if (!from) throw badInput('adoption needs the server(s) that hold the table', 'pass --from postgres://user@host:port/db[,postgres://…]');
  return from.split(',').map((url) => url.trim()).filter(Boolean).map((url, index) => parseUrlOption(url, `--from (URL ${index + 1})`));
}

function parseKey(key: string | undefined): string[] {
  return key ? key.split(',').map((column) => column.trim()).filter(Boolean) : [];
}

function problemJson(problem: ReshardError): { code: string; message: string; fix: string } {
  return { code: problem.code, message: problem.message, fix: problem.fix };
}

/**
 * `reshard table adopt-check TABLE --from URL[,URL…] --key COL`: every reason
 * the table cannot be adopted, one line each with its fix. Returns whether
 * there was none; changes nothing.
 */
export async function adoptCheckCommand(output: Output, access: ClusterAccess, name: string, options: AdoptOptions): Promise<boolean> {
  const report = await checkAdoption(access, {
    name,
    from: parseSources(options.from),
    key: parseKey(options.key),
    ...(options.schema ? { schema: options.schema } : {}),
    ...(options.reference ? { reference: true } : {}),
    ...(options.colocateWith ? { colocateWith: options.colocateWith } : {}),
    headroomFraction: parsePercent(options.headroom, '--headroom', HEADROOM_FRACTION_DEFAULT),
  });
  output.result({ table: report.table, adoptable: report.problems.length === 0, problems: report.problems.map(problemJson), source_nodes: report.sourceNodes.map((node) => node ?? null), bytes: report.bytes });
  for (const problem of report.problems) output.text(`problem: ${problem.line()}`);
  output.text(report.problems.length === 0
    ? `${report.table} can be adopted${options.reference ? ' as a reference table' : ''}: no problem found.`
    : `${report.table} cannot be adopted: ${report.problems.length} problem(s), nothing was changed.`);
  return report.problems.length === 0;
}

/**
 * `reshard table adopt TABLE --reference --from URL`: the table stays on its
 * node, which becomes its holder; every other node gets a copy.
 */
export async function tableAdoptReferenceCommand(output: Output, access: ClusterAccess, name: string, options: AdoptOptions): Promise<void> {
  if (options.key) throw badInput('a reference table has no shard key', 'drop --key (or --reference to shard it)');
  if (options.colocateWith) throw badInput('a reference table is on every node: it has no colocation', 'drop --colocate-with');
  const sources = parseSources(options.from);
  if (sources.length !== 1) throw badInput(`a reference table is adopted from one server, not ${sources.length}`, 'pass one URL to --from');
  try {
    const table = await adoptReferenceTable(access, {
      name,
      from: sources[0]!,
      ...(options.schema ? { schema: options.schema } : {}),
      headroomFraction: parsePercent(options.headroom, '--headroom', HEADROOM_FRACTION_DEFAULT),
    });
    const shown = table.schema === 'public' ? table.name : `${table.schema}.${table.name}`;
    output.result({ table: shown, kind: 'reference', holder: table.holder, adopted: true });
    output.text(`Adopted ${shown} as a reference table: it stays on ${table.holder}, its holder, and every other node has a copy in sync.`);
  } catch (error) {
    // Every problem on its own line; the last line (main's) sums them up.
    if (error instanceof AdoptionRefused && error.problems.length > 1) for (const problem of error.problems) output.error(problem.line());
    throw error;
  }
}


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
  if (options.reference) return tableAdoptReferenceCommand(output, access, name, options);
  if (!options.from) throw badInput('table adopt needs the server(s) that hold the table', 'pass --from URL (several: --from URL1,URL2)');
  if (!options.key) throw badInput('table adopt needs the shard key', 'pass --key COLUMN');
  if (options.key.includes(',')) throw badInput('table adopt takes one shard key column', 'pass --key COLUMN');
  try {
    const result = await adoptTable(access, {
      name,
      from: options.from.split(',').map((url) => url.trim()).filter(Boolean),
      keyColumn: options.key.trim(),
      ...(options.schema ? { schema: options.schema } : {}),
      ...(options.colocateWith ? { colocateWith: options.colocateWith } : {}),
      ...(options.sourceOf !== undefined ? { sourceOf: options.sourceOf } : {}),
      headroomFraction: parsePercent(options.headroom, '--headroom', HEADROOM_FRACTION_DEFAULT),
      emit: (event) => { if (event.action === 'begin' || event.action === 'undo') output.text(`  ${event.action === 'begin' ? 'step' : 'undo'} ${event.step}`); },
    });
    report(output, result);
  } catch (error) {
    // Every problem on its own line; the last line (main's) sums them up.
    if (error instanceof AdoptionRefused && error.problems.length > 1) for (const problem of error.problems) output.error(problem.line());
    throw error;
  }
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
  output.result({ migration_id: result.migrationId, table: result.table, outcome: result.outcome, keys_returned: result.keysReturned, new_keys: result.newKeys, new_keys_to: result.newKeysTo });
  output.text(result.outcome === 'undone'
    ? `Adoption ${result.migrationId} of ${result.table} undone: the old table serves as before.`
    : `Adoption ${result.migrationId} of ${result.table} taken back: ${result.keysReturned} key(s) written since the switch returned to the old table, which serves again`
      + (result.newKeys > 0 ? ` (${result.newKeys} of them new since the switch, sent to ${result.newKeysTo}).` : '.'));
  return true;
}