import { mergeSlot, splitSlot, type SlotExchangeResult } from '../../admin/slotExchange.js';
import { splitAllSlots } from '../../admin/splitAllSlots.js';
import { percentile } from '../../core/percentile.js';
import { badInput, ReshardError, stoppedError } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { MigrationProgress } from '../migrationProgress.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';

export interface SlotExchangeCommandOptions { slot?: string; dryRun?: boolean; to?: string; all?: boolean }

/** `reshard split --slot N [--to NODE] [--dry-run]`, or `reshard split --all [--dry-run]`. */
export async function splitCommand(output: Output, access: ClusterAccess, options: SlotExchangeCommandOptions): Promise<void> {
  if (options.all) {
    if (options.slot !== undefined || options.to !== undefined) throw badInput('--all splits every slot, so it takes neither --slot nor --to', 'give --all alone, or --slot N [--to NODE]');
    await splitAllCommand(output, access, options.dryRun ?? false);
    return;
  }
  if (options.slot === undefined) throw badInput('split needs --slot N or --all', 'name the slot to split (`reshard slot` lists them), or give --all');
  const emit = new MigrationProgress(output).handle;
  report(output, await splitSlot(access, { slot: parseWholeNumber(options.slot, '--slot', 0), dryRun: options.dryRun ?? false, emit, ...(options.to !== undefined ? { to: options.to } : {}) }));
}

/** `reshard merge --slot N [--dry-run]`. */
export async function mergeCommand(output: Output, access: ClusterAccess, options: SlotExchangeCommandOptions): Promise<void> {
  report(output, await mergeSlot(access, { slot: parseWholeNumber(options.slot, '--slot', 0), dryRun: options.dryRun ?? false, emit: new MigrationProgress(output).handle }));
}

function report(output: Output, result: SlotExchangeResult): void {
  const bounds = (slots: readonly { slot: number; modulus: number }[]): string => slots.map(({ slot, modulus }) => `slot ${slot} (modulus ${modulus})`).join(' and ');
  output.result({
    kind: result.kind, dry_run: result.dryRun, node: result.node, migration_id: result.migrationId ?? null, resumed: result.resumed ?? false,
    replaced: result.replaced, replacements: result.replacements, rows: result.rows ?? null, pause_ms: result.pauseMs ?? null, moved: result.moved ?? null, rows_copied: result.rowsCopied ?? null,
    ...(result.dryRun ? { steps: result.steps } : {}),
  });
  const to = result.moved?.to ?? result.to;
  const what = to === undefined
    ? `${bounds(result.replaced)} → ${bounds(result.replacements)} on ${result.node}`
    : `${bounds(result.replaced)} on ${result.node} → ${bounds(result.replacements.slice(0, 1))} on ${result.node} and ${bounds(result.replacements.slice(1))} on ${to}`;
  if (result.dryRun) {
    output.text(`Would ${result.kind} ${what}:`);
    for (const step of result.steps) output.text(`  ${step.step.padEnd(8)} ${step.action}`);
    return;
  }
  output.text(`${result.kind === 'split' ? 'Split' : 'Merged'} ${what}${result.resumed ? ' (resumed)' : ''}: ${result.rows ?? '?'} rows, writes to the slot paused ${result.pauseMs ?? '?'} ms (migration ${result.migrationId}).`);
  if (result.rowsCopied) output.text(`Rows copied once: ${result.rowsCopied.low} into slot ${result.replacements[0]!.slot} on ${result.node}, ${result.rowsCopied.high} into slot ${result.replacements[1]!.slot} on ${to}.`);
  if (result.moved) output.text(`Moved slot ${result.moved.slot} to ${result.moved.to}: migration ${result.moved.migrationId} ${result.moved.state}.`);
}

/** `reshard split --all`: progress as a rebalance shows it, then one line (and `--json`: one result). */
async function splitAllCommand(output: Output, access: ClusterAccess, dryRun: boolean): Promise<void> {
  const result = await splitAllSlots(access, { dryRun, emit: new MigrationProgress(output).handle });
  const pauses = result.pausesMs.length > 0
    ? { pause_ms_p50: percentile(result.pausesMs, 0.5), pause_ms_p99: percentile(result.pausesMs, 0.99), pause_ms_max: Math.max(...result.pausesMs) }
    : {};
  output.result({
    kind: 'split-all', dry_run: result.dryRun, migration_id: result.migrationId ?? null, resumed: result.resumed, state: result.state,
    slots_before: result.slotsBefore, slots_after: result.slotsAfter, moduli_before: result.moduliBefore, moduli_after: result.moduliAfter,
    splits: result.splits, splits_done: result.splitsDone, rows: result.rows, seconds: result.seconds, ...pauses,
    ...(result.error ? { error: result.error } : {}), ...(result.dryRun ? { steps: result.steps } : {}),
  });
  const moduli = (values: readonly number[]): string => values.join(', ');
  if (result.dryRun) {
    output.text(`Would split all ${result.splits} slots (modulus ${moduli(result.moduliBefore)} → ${moduli(result.moduliAfter)}), one at a time, each on its own node; each split:`);
    for (const step of result.steps) output.text(`  ${step.step.padEnd(8)} ${step.action}`);
    return;
  }
  const pauseText = result.pausesMs.length > 0 ? `; per-slot write pause p50 ${percentile(result.pausesMs, 0.5).toFixed(0)} ms, max ${Math.max(...result.pausesMs).toFixed(0)} ms` : '';
  output.text(`Split --all (migration ${result.migrationId}) ${result.state}${result.resumed ? ' (resumed)' : ''}: ${result.splitsDone} of ${result.splits} slots split, ${result.slotsAfter} slots now (modulus ${moduli(result.moduliAfter)}), ${result.rows} rows in ${result.seconds.toFixed(1)} s${pauseText}.`);
  if (result.state === 'cancelled') {
    throw new ReshardError('aborted', `split --all (migration ${result.migrationId}) was cancelled after ${result.splitsDone} splits; those slots stay split`, 'run `reshard split --all` again to split the rest (it splits the slots not split yet), or leave the map as it is');
  }
  if (result.state === 'failed') throw stoppedError(`split --all (migration ${result.migrationId})`, result.error, 'run `reshard split --all` (or `reshard resume`) again: it continues from its journal');
}
