import { AdoptionRefused } from '../../admin/adoptionRefused.js';
import { checkAdoption } from '../../admin/adoptPreflight.js';
import { adoptReferenceTable } from '../../admin/adoptReferenceTable.js';
import { HEADROOM_FRACTION_DEFAULT } from '../../admin/clusterSnapshot.js';
import type { ConnectionSettings } from '../../core/connection.js';
import { badInput, type ReshardError } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { parseUrlOption } from '../config.js';
import type { Output } from '../output.js';
import { parsePercent } from '../parseNumbers.js';

export interface AdoptOptions { from?: string; key?: string; colocateWith?: string; schema?: string; reference?: boolean; headroom?: string }

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
