import { mergeSlot, splitSlot, type SlotExchangeResult } from '../../admin/slotExchange.js';
import { stoppedError } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';

export interface SlotExchangeCommandOptions { slot?: string; dryRun?: boolean; to?: string }

/** `reshard split --slot N [--dry-run]`. */
export async function splitCommand(output: Output, access: ClusterAccess, options: SlotExchangeCommandOptions): Promise<void> {
  report(output, await splitSlot(access, { slot: parseWholeNumber(options.slot, '--slot', 0), dryRun: options.dryRun ?? false, ...(options.to !== undefined ? { to: options.to } : {}) }));
}

/** `reshard merge --slot N [--dry-run]`. */
export async function mergeCommand(output: Output, access: ClusterAccess, options: SlotExchangeCommandOptions): Promise<void> {
  report(output, await mergeSlot(access, { slot: parseWholeNumber(options.slot, '--slot', 0), dryRun: options.dryRun ?? false }));
}

function report(output: Output, result: SlotExchangeResult): void {
  const bounds = (slots: readonly { slot: number; modulus: number }[]): string => slots.map(({ slot, modulus }) => `slot ${slot} (modulus ${modulus})`).join(' and ');
  output.result({
    kind: result.kind, dry_run: result.dryRun, node: result.node, migration_id: result.migrationId ?? null, resumed: result.resumed ?? false,
    replaced: result.replaced, replacements: result.replacements, rows: result.rows ?? null, pause_ms: result.pauseMs ?? null, moved: result.moved ?? null,
    ...(result.dryRun ? { steps: result.steps } : {}),
  });
  const what = `${bounds(result.replaced)} → ${bounds(result.replacements)} on ${result.node}`;
  if (result.dryRun) {
    output.text(`Would ${result.kind} ${what}:`);
    for (const step of result.steps) output.text(`  ${step.step.padEnd(8)} ${step.action}`);
    return;
  }
  output.text(`${result.kind === 'split' ? 'Split' : 'Merged'} ${what}${result.resumed ? ' (resumed)' : ''}: ${result.rows ?? '?'} rows, writes to the slot paused ${result.pauseMs ?? '?'} ms (migration ${result.migrationId}).`);
  if (result.moved) {
    output.text(`Moved slot ${result.moved.slot} to ${result.moved.to}: migration ${result.moved.migrationId} ${result.moved.state}${result.moved.error ? ` (${result.moved.error})` : ''}.`);
    if (result.moved.state !== 'completed') throw stoppedError(`moving slot ${result.moved.slot} to ${result.moved.to} (migration ${result.moved.migrationId})`, result.moved.error, 'run `reshard resume`');
  }
}
