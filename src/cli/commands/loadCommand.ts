import { createReadStream, statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import { loadRows } from '../../admin/loadRows.js';
import { formatBytes } from '../../core/bytes.js';
import { badInput } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import type { Output } from '../output.js';

export interface LoadOptions { format?: string; header?: boolean; columns?: string }

/** `reshard load TABLE [FILE|-]`: rows in COPY text or CSV format, each sent to its slot's owner. */
export async function loadCommand(output: Output, access: ClusterAccess, table: string, file: string | undefined, options: LoadOptions): Promise<void> {
  const fromStdin = file === undefined || file === '-';
  const format = options.format ?? (!fromStdin && /\.csv$/i.test(file) ? 'csv' : 'text');
  if (format !== 'text' && format !== 'csv') throw badInput(`--format ${format} is not a COPY format reshard reads`, 'pass --format text or --format csv');
  if (options.header && format !== 'csv') throw badInput('--header goes with CSV input only', 'pass --format csv, or drop --header');
  let sizeBytes: number | undefined;
  if (!fromStdin) {
    try {
      sizeBytes = statSync(file).size;
    } catch {
      throw badInput(`cannot read ${file}`, 'give the path of a readable file, or - for standard input');
    }
  }
  const columns = options.columns?.split(',').map((column) => column.trim()).filter(Boolean);
  const bar = output.interactive && sizeBytes !== undefined
    ? new cliProgress.SingleBar({
      format: '  {bar} {percentage}% | {read} / {size} | {rows} rows',
      hideCursor: true,
      stream: output.errorStream as NodeJS.WriteStream,
    }, cliProgress.Presets.shades_classic)
    : undefined;
  bar?.start(Math.max(1, sizeBytes ?? 1), 0, { read: formatBytes(0), size: formatBytes(sizeBytes ?? 0), rows: 0 });
  try {
    const result = await loadRows(access, {
      table,
      input: fromStdin ? process.stdin : createReadStream(file),
      format,
      header: Boolean(options.header),
      ...(columns ? { columns } : {}),
      onProgress: ({ rows, bytesRead }) => bar?.update(bytesRead, { read: formatBytes(bytesRead), size: formatBytes(sizeBytes ?? 0), rows }),
    });
    bar?.stop();
    output.result({ table: result.table, rows: result.rows, rows_by_node: result.rowsByNode, epoch: result.epoch });
    const perNode = Object.entries(result.rowsByNode).map(([node, rows]) => `${node} ${rows}`).join(', ');
    output.text(`Loaded ${result.rows} rows into ${result.table}${perNode ? ` (${perNode})` : ''}`);
  } finally {
    bar?.stop();
  }
}
