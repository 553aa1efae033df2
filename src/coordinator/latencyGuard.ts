import { readOtherSlotsP99 } from '../catalog/slotLoad.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { errorFields, log } from '../plumbing/log.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { CopyThrottle } from './copyThrottle.js';

const logger = log('latency-guard');

export interface LatencyGuardLimits {
  /** Keep the other slots' p99 within this factor of the baseline (1.2: 20 % above it). */
  impactMax: number;
  /** The baseline: routers' reports over this long before the migration. */
  baselineWindowMs: number;
  /** The p99 now: routers' reports over this long; a router reports every 10 s by default, so not much shorter. */
  currentWindowMs: number;
  pollMs: number;
  /** The slowest the guard lets copies go (near a pause, never a stop: the replication watch owns holds). */
  bytesPerSecFloor: number;
}

export const LATENCY_GUARD_DEFAULT: Omit<LatencyGuardLimits, 'impactMax'> = {
  baselineWindowMs: 120_000,
  currentWindowMs: 20_000,
  pollMs: 5_000,
  bytesPerSecFloor: 64 * 1024,
};

/** The guard's state between polls: the cap it set (undefined: none beyond the operator's). */
export interface GuardState {
  capBytesPerSec: number | undefined;
}

/**
 * The next rate cap from the ratio of the other slots' p99 to the baseline
 * (AIMD): over the limit, halve (from the rate copies went at, if no cap yet)
 * down to the floor; under 90 % of it, grow by half, and drop the cap once it
 * is well above what the copies did. Pure.
 */
export function nextRateCap(state: GuardState, ratio: number, observedBytesPerSec: number, limits: Pick<LatencyGuardLimits, 'impactMax' | 'bytesPerSecFloor'>): { capBytesPerSec: number | undefined; change: 'slower' | 'faster' | 'uncapped' | 'same' } {
  if (ratio > limits.impactMax) {
    const from = state.capBytesPerSec ?? Math.max(observedBytesPerSec, limits.bytesPerSecFloor * 2);
    const cap = Math.max(limits.bytesPerSecFloor, from / 2);
    return { capBytesPerSec: cap, change: cap === state.capBytesPerSec ? 'same' : 'slower' };
  }
  if (ratio < limits.impactMax * 0.9 && state.capBytesPerSec !== undefined) {
    const cap = state.capBytesPerSec * 1.5;
    if (cap > Math.max(observedBytesPerSec, limits.bytesPerSecFloor) * 4) return { capBytesPerSec: undefined, change: 'uncapped' };
    return { capBytesPerSec: cap, change: 'faster' };
  }
  return { capBytesPerSec: state.capBytesPerSec, change: 'same' };
}

/**
 * While a migration copies: compares the routers' p99 on the slots it does
 * not move with the baseline before it started, and slows the copies down
 * (the shared rate cap of the copy throttle) while that p99 is beyond
 * `impactMax` × baseline, then lets them speed up again. Without router
 * reports it says so and does nothing. Returns a function that stops it.
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
  const state: GuardState = { capBytesPerSec: undefined };
  let baselineMs: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let lastStreamed = throttle.streamedBytes;
  let lastAt = performance.now();
  const read = (windowMs: number) => withCatalog(options.access, (catalog) => readOtherSlotsP99(catalog, { windowMs, excludedSlots: options.movingSlots }));

  const pollOnce = async (): Promise<void> => {
    if (baselineMs === undefined) {
      const baseline = await read(limits.baselineWindowMs);
      if (!baseline) {
        emit({ type: 'throttle', migrationId, state: 'released', reason: 'latency guard inactive: no router reported load before the migration (it throttles by routers\' p99)' });
        stopped = true;
        return;
      }
      baselineMs = baseline.p99Ms;
      emit({ type: 'throttle', migrationId, state: 'released', reason: `latency guard: baseline p99 of the other slots ${baselineMs.toFixed(2)} ms, limit ${(baselineMs * limits.impactMax).toFixed(2)} ms` });
      return;
    }
    const now = await read(limits.currentWindowMs);
    if (!now) return;
    const at = performance.now();
    const observed = ((throttle.streamedBytes - lastStreamed) / Math.max(1, at - lastAt)) * 1000;
    lastStreamed = throttle.streamedBytes;
    lastAt = at;
    const ratio = now.p99Ms / baselineMs;
    const next = nextRateCap(state, ratio, observed, limits);
    if (next.change === 'same') return;
    state.capBytesPerSec = next.capBytesPerSec;
    const operator = options.operatorCapBytesPerSec;
    throttle.setBytesPerSecMax(next.capBytesPerSec === undefined ? operator : Math.min(next.capBytesPerSec, operator ?? Infinity));
    const reason = `latency guard: other slots' p99 ${now.p99Ms.toFixed(2)} ms = ${ratio.toFixed(2)}× baseline (limit ${limits.impactMax}×): copies ${next.change === 'uncapped' ? 'uncapped' : `capped at ${Math.round((next.capBytesPerSec ?? 0) / 1024)} kB/s`}`;
    logger.info({ migrationId, p99Ms: now.p99Ms, baselineMs, ratio, capBytesPerSec: next.capBytesPerSec }, reason);
    emit({ type: 'throttle', migrationId, state: next.change === 'slower' ? 'held' : 'released', reason });
  };

  const loop = (): void => {
    if (stopped) return;
    void pollOnce().catch((error: unknown) => logger.warn({ ...errorFields(error), migrationId }, 'latency guard: the catalog could not be read')).finally(() => {
      if (!stopped) timer = setTimeout(loop, limits.pollMs);
    });
  };
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
