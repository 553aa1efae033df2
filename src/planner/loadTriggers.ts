import { isOverloaded } from './loadMoves.js';
import type { NodeShare } from './loadShares.js';

/** One node's load trigger, with the numbers of every period it looked at. */
export interface LoadTrigger {
  node: string;
  /** Over-loaded (beyond tolerance and floor) in each of the last `sustainPeriods` periods. */
  fired: boolean;
  periodsOver: number;
  periodsMeasured: number;
  /** Latest first: load / weighted share, load, and the share it should carry. */
  ratios: number[];
  loads: number[];
  fairLoads: number[];
  reason: string;
}

export interface TriggerSettings {
  tolerance: number;
  loadFloor: number;
  sustainPeriods: number;
}

/**
 * Hysteresis: a node triggers only when it was over-loaded (load beyond
 * (1 + tolerance) × its weighted share *and* more than the floor above it) in
 * each of the last `sustainPeriods` periods. `periods[0]` is the latest; a
 * period without load does not count as measured.
 */
export function loadTriggers(periods: readonly (readonly NodeShare[])[], settings: TriggerSettings, what = 'load'): LoadTrigger[] {
  const names = [...new Set(periods.flatMap((shares) => shares.map((share) => share.node)))].sort();
  return names.map((node) => {
    const ratios: number[] = [];
    const loads: number[] = [];
    const fairLoads: number[] = [];
    let periodsOver = 0;
    let periodsMeasured = 0;
    let consecutive = true;
    for (const shares of periods.slice(0, settings.sustainPeriods)) {
      const total = shares.reduce((sum, share) => sum + share.load, 0);
      const share = shares.find((candidate) => candidate.node === node);
      if (total <= 0 || !share) {
        consecutive = false;
        continue;
      }
      periodsMeasured++;
      ratios.push(share.ratio);
      loads.push(share.load);
      fairLoads.push(total * share.weightedShare);
      if (isOverloaded(share, total, settings.tolerance, settings.loadFloor)) periodsOver++;
      else consecutive = false;
    }
    const fired = consecutive && periodsOver >= settings.sustainPeriods;
    const latest = ratios[0];
    const reason = periodsMeasured === 0
      ? `no ${what} measured`
      : fired
        ? `over its share in all ${settings.sustainPeriods} periods (${what}/share ${ratios.map((ratio) => fmt(ratio)).join(', ')} > ${fmt(1 + settings.tolerance)}, excess ${fmt(loads[0]! - fairLoads[0]!)} > floor ${fmt(settings.loadFloor)})`
        : periodsOver === 0
          ? `within its share (${what}/share ${fmt(latest!)} ≤ ${fmt(1 + settings.tolerance)} or excess ${fmt(loads[0]! - fairLoads[0]!)} ≤ floor ${fmt(settings.loadFloor)})`
          : `over its share in ${periodsOver} of the last ${settings.sustainPeriods} periods (${periodsMeasured} measured): not sustained yet`;
    return { node, fired, periodsOver, periodsMeasured, ratios, loads, fairLoads, reason };
  });
}

function fmt(value: number): string {
  return Number.isFinite(value) ? value.toFixed(2) : '∞';
}
