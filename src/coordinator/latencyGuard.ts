import { readOtherSlotsLatency, type LatencyInWindow } from '../catalog/slotLoad.js';
import { interpolatedPercentileMs } from '../core/latencyHistogram.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { errorFields, log } from '../plumbing/log.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { CopyThrottle } from './copyThrottle.js';
import { nextGuardStep, type GuardControlState } from './latencyGuardControl.js';

const logger = log('latency-guard');

export interface LatencyGuardLimits {
  /** Keep the other slots' p99 within this factor of the baseline (1.2: 20 % above it). */
  impactMax: number;
  /**
   * Latency the bound always allows above the baseline: on a fast cluster (p99 of 0.5 ms) 20 % is
   * 0.1 ms, within a scheduler's noise, and a bound no copy could keep.
   */
  impactSlackMs: number;
  /** The baseline: routers' reports over this long before the migration. */
  baselineWindowMs: number;
  /**
   * The p99 now: the routers' reports of the shortest recent window that holds `callsMin` calls,
   * at least two reporting periods (a router reports every 10 s by default; 1 s gives the guard a
   * fast loop), at most this long (or two periods, if longer).
   */
  currentWindowMsMax: number;
  /** Fewer calls than this in a window make no decision yet (a p99 of 50 calls is their maximum), unless the window is at its longest. */
  callsMin: number;
  pollMs: number;
  /** The rate copies start at: they speed up while the other slots' p99 stays well under the bound. */
  bytesPerSecStart: number;
  /** The slowest the guard lets copies go when it does not pause them. */
  bytesPerSecFloor: number;
  /** Longest one pause lasts before copies crawl at the floor for a step: a pause never stops a migration for good. */
  pauseMsMax: number;
}

export const LATENCY_GUARD_DEFAULT: Omit<LatencyGuardLimits, 'impactMax'> = {
  impactSlackMs: 1,
  baselineWindowMs: 120_000,
  currentWindowMsMax: 10_000,
  callsMin: 300,
  pollMs: 500,
  bytesPerSecStart: 2 * 1024 * 1024,
  bytesPerSecFloor: 256 * 1024,
  pauseMsMax: 30_000,
};

/** 1 call/s: the slowest traffic the guard sizes its window for (the window never exceeds currentWindowMsMax). */
const CALLS_PER_MS_MIN = 0.001;

/** The reporting period the guard assumes until it has seen one (the bench and the autopilot's routers use 1 s). */
const REPORT_PERIOD_MS_ASSUMED = 1_000;

/**
 * While a migration runs: compares the p99 of the calls routers saw on the
 * slots it does not move (all those calls' latency histograms added up, as
 * the clients feel them) with the same p99 before it started, and keeps it
 * within `impactMax` × that baseline by the copy throttle's rate cap and, over
 * the bound, by pausing copies (and cutovers, which wait at the throttle too)
 * until the p99 is back under it (see latencyGuardControl.ts). Without
 * router reports it says so and does nothing. Returns a function that stops it
 * (and lets paused copies go).
 */
export function guardLatency(options: {
  migrationId: number;
  access: ClusterAccess;
  throttle: CopyThrottle;
  movingSlots: readonly number[];
  /** The operator's own cap (--max-copy-rate): the guard never lets copies go faster. */
  operatorCapBytesPerSec: number | undefined;
  limits: LatencyGuardLimits;
  emit: MigrationEventSink;
}): () => void {
  const { migrationId, throttle, limits, emit } = options;
  const operatorCap = options.operatorCapBytesPerSec;
  let state: GuardControlState = { capBytesPerSec: Math.min(limits.bytesPerSecStart, operatorCap ?? Infinity), paused: false, pausedSinceMs: 0, crossed: false };
  let baselineMs: number | undefined;
  let impactMax = limits.impactMax;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let changedAtMs = performance.now();
  let admittedAtChange = throttle.admittedBytes;
  let reportPeriodMs = REPORT_PERIOD_MS_ASSUMED;
  let callsPerMs = CALLS_PER_MS_MIN;
  const read = (windowMs: number): Promise<LatencyInWindow | undefined> =>
    withCatalog(options.access, (catalog) => readOtherSlotsLatency(catalog, { windowMs, excludedSlots: options.movingSlots }));
  // Copies start at the start rate, not at full speed: the first reading comes a reporting period later.
  throttle.setBytesPerSecMax(state.capBytesPerSec);

  const pollOnce = async (): Promise<void> => {
    if (baselineMs === undefined) {
      const baseline = await read(limits.baselineWindowMs);
      const p99Ms = baseline === undefined ? undefined : interpolatedPercentileMs(baseline.counts, 0.99);
      if (baseline === undefined || p99Ms === undefined) {
        throttle.setBytesPerSecMax(operatorCap);
        emit({ type: 'throttle', migrationId, state: 'released', reason: 'latency guard inactive: no router reported load before the migration (it throttles by routers\' p99)' });
        stopped = true;
        return;
      }
      baselineMs = p99Ms;
      reportPeriodMs = baseline.reportPeriodMsMax;
      // Traffic may have begun within the baseline window: a first guess, corrected by the first reading.
      callsPerMs = Math.max(baseline.calls / limits.baselineWindowMs, CALLS_PER_MS_MIN);
      impactMax = Math.max(limits.impactMax, 1 + limits.impactSlackMs / baselineMs);
      emit({ type: 'throttle', migrationId, state: 'released', reason: `latency guard: baseline p99 of the other slots ${baselineMs.toFixed(2)} ms over ${baseline.calls} calls, limit ${(baselineMs * impactMax).toFixed(2)} ms; copies start at ${kBps(state.capBytesPerSec)}` });
      return;
    }
    const nowMs = performance.now();
    // The shortest recent window that holds enough calls for a p99 (at least two reporting periods):
    // the guard sees a change within a second or two, not after a long average has caught up.
    const windowMaxMs = Math.max(limits.currentWindowMsMax, 2 * reportPeriodMs);
    const windowMs = Math.min(windowMaxMs, Math.max(2 * reportPeriodMs, (limits.callsMin / callsPerMs) * 1.25));
    // A decision needs a window that began after the last one: what the copies did before it is no news.
    if (nowMs - changedAtMs < windowMs) return;
    const now = await read(windowMs);
    if (!now) return;
    callsPerMs = Math.max(now.calls / windowMs, CALLS_PER_MS_MIN);
    reportPeriodMs = Math.max(1, now.reportPeriodMsMax);
    if (now.calls < limits.callsMin && windowMs < windowMaxMs) return;
    const p99Ms = interpolatedPercentileMs(now.counts, 0.99)!;
    const ratio = p99Ms / baselineMs;
    const observedBytesPerSec = ((throttle.admittedBytes - admittedAtChange) / Math.max(1, nowMs - changedAtMs)) * 1000;
    const next = nextGuardStep(state, { ratio, observedBytesPerSec, nowMs }, {
      impactMax, bytesPerSecFloor: Math.min(limits.bytesPerSecFloor, operatorCap ?? Infinity), bytesPerSecCeiling: operatorCap, pauseMsMax: limits.pauseMsMax,
    });
    if (next.change === 'same') return;
    state = next.state;
    changedAtMs = nowMs;
    admittedAtChange = throttle.admittedBytes;
    throttle.setBytesPerSecMax(state.capBytesPerSec);
    const measured = `other slots' p99 ${p99Ms.toFixed(2)} ms = ${ratio.toFixed(2)}× baseline (limit ${impactMax.toFixed(2)}×, ${now.calls} calls in ${(windowMs / 1000).toFixed(1)} s)`;
    const reason = next.change === 'paused' ? `latency guard: ${measured}: copies and cutovers paused; they resume at ${kBps(state.capBytesPerSec)}`
      : next.change === 'crawl' ? `latency guard: ${measured} after a ${Math.round(limits.pauseMsMax / 1000)} s pause: copies go on at ${kBps(state.capBytesPerSec)} (the baseline may no longer hold)`
        : next.change === 'resumed' ? `latency guard: ${measured}: copies resume at ${kBps(state.capBytesPerSec)}`
          : `latency guard: ${measured}: copies may go ${kBps(state.capBytesPerSec)}`;
    if (state.paused) throttle.pause(reason);
    else throttle.resume();
    logger.info({ migrationId, p99Ms, baselineMs, ratio, capBytesPerSec: state.capBytesPerSec, paused: state.paused, calls: now.calls, windowMs }, reason);
    emit({ type: 'throttle', migrationId, state: state.paused ? 'held' : 'released', reason });
  };

  const loop = (): void => {
    if (stopped) return;
    void pollOnce().catch((error: unknown) => {
      logger.warn({ ...errorFields(error), migrationId }, 'latency guard: the catalog could not be read');
      // Blind, a pause is bounded all the same.
      if (state.paused && performance.now() - state.pausedSinceMs >= limits.pauseMsMax) {
        state = { ...state, paused: false, capBytesPerSec: Math.min(limits.bytesPerSecFloor, operatorCap ?? Infinity) };
        changedAtMs = performance.now();
        admittedAtChange = throttle.admittedBytes;
        throttle.setBytesPerSecMax(state.capBytesPerSec);
        throttle.resume();
        emit({ type: 'throttle', migrationId, state: 'released', reason: `latency guard: the routers' reports cannot be read; copies go on at ${kBps(state.capBytesPerSec)}` });
      }
    }).finally(() => {
      if (!stopped) timer = setTimeout(loop, limits.pollMs);
    });
  };
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
    throttle.resume();
  };
}

function kBps(bytesPerSec: number): string {
  return `${Math.round(bytesPerSec / 1024)} kB/s`;
}
