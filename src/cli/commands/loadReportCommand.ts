import { loadReport, type LoadReport } from '../../admin/loadReport.js';
import { badInput } from '../../core/errors.js';
import { formatTable } from '../../planner/index.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import type { Output } from '../output.js';
import { parseDurationMs } from '../parseDuration.js';

export interface LoadReportCommandOptions {
  window?: string;
  sample?: string;
  source?: string;
  top?: string;
}

/** `reshard load-report`: per node its load against its weighted share, and the busiest slots. */
export async function loadReportCommand(output: Output, access: ClusterAccess, options: LoadReportCommandOptions): Promise<void> {
  const source = options.source ?? 'auto';
  if (source !== 'auto' && source !== 'routers' && source !== 'nodes') throw badInput(`--source must be auto, routers or nodes, got "${source}"`, 'pass --source auto');
  const top = options.top === undefined ? 20 : Number(options.top);
  if (!Number.isSafeInteger(top) || top < 0) throw badInput(`--top must be a whole number ≥ 0, got "${options.top}"`, 'pass e.g. --top 20');
  const report = await loadReport(access, {
    windowMs: parseDurationMs(options.window, '--window', 60_000),
    sampleMs: parseDurationMs(options.sample, '--sample', 5_000),
    source,
  });
  output.result(loadReportJson(report));
  output.text(describeLoadReport(report, top));
}

export function loadReportJson(report: LoadReport): Record<string, unknown> {
  return {
    source: report.source, unit: report.unit, window_ms: report.windowMs, routers: report.routers, total_load: report.totalLoad,
    nodes: report.nodes.map((node) => ({
      node: node.node, weight: node.weight, slots: node.slots, bytes: node.bytes, load: node.load, share: node.share,
      weighted_share: node.weightedShare, ratio: Number.isFinite(node.ratio) ? node.ratio : null,
    })),
    slots: report.slots.map((slot) => ({
      slot: slot.slot, owner: slot.owner, load: slot.load, bytes: slot.bytes, calls_per_sec: slot.callsPerSec,
      rows_written_per_sec: slot.rowsWrittenPerSec, p50_ms: slot.p50Ms, p99_ms: slot.p99Ms,
    })),
  };
}

export function describeLoadReport(report: LoadReport, top: number): string {
  const from = report.source === 'routers'
    ? `reported by ${report.routers} router(s) over the last ${(report.windowMs / 1000).toFixed(0)} s`
    : `sampled from the nodes' counters over ${(report.windowMs / 1000).toFixed(1)} s (no router reported)`;
  const lines = [`Load (${report.unit}) ${from}: ${report.totalLoad.toFixed(1)} in all.`, ''];
  lines.push(formatTable([['node', 'weight', 'slots', 'load', 'share', 'weighted share', 'load / share'], ...report.nodes.map((node) => [
    node.node, String(node.weight), String(node.slots), node.load.toFixed(1), percent(node.share), percent(node.weightedShare),
    Number.isFinite(node.ratio) ? node.ratio.toFixed(2) : '∞',
  ])]));
  if (top > 0 && report.slots.length > 0) {
    lines.push('', `Busiest slots (${Math.min(top, report.slots.length)} of ${report.slots.length} with load):`);
    const latency = report.source === 'routers';
    lines.push(formatTable([['slot', 'owner', 'load', 'share', ...(latency ? ['rows written/s', 'p50 ms', 'p99 ms'] : [])], ...report.slots.slice(0, top).map((slot) => [
      String(slot.slot), slot.owner, slot.load.toFixed(1), percent(report.totalLoad > 0 ? slot.load / report.totalLoad : 0),
      ...(latency ? [slot.rowsWrittenPerSec.toFixed(1), slot.p50Ms.toFixed(2), slot.p99Ms.toFixed(2)] : []),
    ])]));
  }
  return lines.join('\n');
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)} %`;
}
