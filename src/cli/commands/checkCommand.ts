import { runCheck } from '../../checker/runCheck.js';
import { badInput } from '../../core/errors.js';
import { assertSlotCount } from '../../admin/initCluster.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';

export interface CheckCommandOptions { clients?: string; slots?: string; counters?: string; mode?: string }

/** Runs the consistency check on local servers; false when a violation was found. */
export async function checkCommand(output: Output, options: CheckCommandOptions): Promise<boolean> {
  const clients = parseWholeNumber(options.clients, '--clients', 1, 8);
  const slots = parseWholeNumber(options.slots, '--slots', 4, 64);
  assertSlotCount(slots);
  const counters = parseWholeNumber(options.counters, '--counters', 1, 256);
  const mode = options.mode ?? 'online';
  if (mode !== 'online' && mode !== 'offline') throw badInput(`--mode ${mode} is not a mover`, 'use --mode online or --mode offline');
  const result = await runCheck({ clients, slots, counters, mode, say: (line) => (output.json ? output.errorStream.write(`${line}\n`) : output.text(line)) });
  const summary = {
    ok: result.report.ok,
    mode,
    clients,
    slots,
    grow: result.grow ? { state: result.grow.state, slots_moved: result.grow.slotsMoved } : null,
    shrink: result.shrink ? { state: result.shrink.state, slots_moved: result.shrink.slotsMoved } : null,
    writes: result.writes,
    inserts_acked: result.report.insertsAcked,
    increments_acked: result.report.incrementsAcked,
    deletes_acked: result.report.deletesAcked,
    unknown_outcomes: result.report.unknownOutcomes,
    client_errors: result.clientErrors,
    client_error_samples: result.clientErrorSamples,
    pause_ms_p99: result.pauseMsP99,
    pause_ms_max: result.pauseMsMax,
    violations: result.report.violations,
    seconds: result.seconds,
  };
  output.result(summary);
  output.text(`Writes: ${result.writes} (${result.report.insertsAcked} inserts, ${result.report.incrementsAcked} increments, ${result.report.deletesAcked} deletes acknowledged; ${result.report.unknownOutcomes} unknown outcomes reported apart), client errors ${result.clientErrors}.`);
  output.text(`Per-slot write pause: p99 ${result.pauseMsP99.toFixed(0)} ms, max ${result.pauseMsMax.toFixed(0)} ms.`);
  for (const error of result.clientErrorSamples) output.text(`  client error: ${error}`);
  for (const violation of result.report.violations.slice(0, 50)) output.text(`  violation: ${violation}`);
  if (result.report.violations.length > 50) output.text(`  … and ${result.report.violations.length - 50} more`);
  output.text(result.report.ok ? 'Check passed: every acknowledged write is present exactly once on its owner; no leftovers.' : `Check FAILED: ${result.report.violations.length} violation(s).`);
  return result.report.ok;
}
