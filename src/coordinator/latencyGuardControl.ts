/**
 * The latency guard's decision at one poll, pure. Its inputs are two ratios
 * to the bound's limit (1 = at the limit): `recent`, what the application
 * feels over the last few seconds, and `sinceStart`, over the whole migration
 * so far — the number the bound is about (other slots' p99 during the
 * migration). On a busy machine a few seconds' p99 jumps by 2× with nothing
 * changed; reacting to each jump alone keeps copies at a crawl while the
 * migration's own p99 stays far under its limit. So the margin the migration
 * has earned decides how hard the guard reacts:
 *
 * - recent over the limit, and since-start near it (≥ PAUSE_SHARE): pause
 *   copies (and cutovers) at once; they resume at half the rate;
 * - recent over the limit, since-start getting close (≥ SLOW_SHARE): slow
 *   down (rate × SLOW_FACTOR) — the guard slows down, then pauses;
 * - paused: resume once recent is back within the limit, or since-start has
 *   gone well under it;
 * - room on both (or a large margin since start): grow the rate — by half per
 *   step until the limit was first crossed (slow start: copies begin slow,
 *   not at full speed), by an eighth after — and only if the copies used
 *   most of it (a cap nobody reaches says nothing).
 *
 * A pause lasting `pauseMsMax` lets copies crawl at the floor for a step, so
 * that a baseline that no longer holds (other load arrived) cannot stop a
 * migration for good.
 */
export interface GuardControlLimits {
  /** Slowest rate the cap goes down to (bytes of slot size per second). */
  bytesPerSecFloor: number;
  /** The operator's cap (--max-copy-rate), if any: the guard never goes above it. */
  bytesPerSecCeiling: number | undefined;
  pauseMsMax: number;
}

export interface GuardControlState {
  capBytesPerSec: number;
  paused: boolean;
  /** When the current pause began (ms, the poll clock). */
  pausedSinceMs: number;
  /** The limit has been crossed at least once: growth is careful from then on. */
  crossed: boolean;
}

export type GuardChange = 'paused' | 'slower' | 'resumed' | 'crawl' | 'faster' | 'same';

/** Shares of the limit (see above). */
export const PAUSE_SHARE = 0.95;
export const SLOW_SHARE = 0.85;
export const GROW_SHARE = 0.85;
const SLOW_FACTOR = 0.7;
const SLOW_START_GROWTH = 1.5;
const CAREFUL_GROWTH = 1.125;

export interface GuardReading {
  /** Recent latency / its limit. */
  recent: number;
  /** Latency since the migration began / its limit (the recent one while there is no other). */
  sinceStart: number;
  observedBytesPerSec: number;
  nowMs: number;
}

export function nextGuardStep(state: GuardControlState, reading: GuardReading, limits: GuardControlLimits): { state: GuardControlState; change: GuardChange } {
  const { recent, sinceStart, observedBytesPerSec, nowMs } = reading;
  const floor = limits.bytesPerSecFloor;
  if (state.paused) {
    if (recent <= 1 || sinceStart < SLOW_SHARE) return { state: { ...state, paused: false }, change: 'resumed' };
    if (nowMs - state.pausedSinceMs >= limits.pauseMsMax) return { state: { ...state, capBytesPerSec: floor, paused: false }, change: 'crawl' };
    return { state, change: 'same' };
  }
  if (recent > 1) {
    if (sinceStart >= PAUSE_SHARE) {
      return { state: { capBytesPerSec: Math.max(floor, state.capBytesPerSec / 2), paused: true, pausedSinceMs: nowMs, crossed: true }, change: 'paused' };
    }
    if (sinceStart >= SLOW_SHARE) {
      const capBytesPerSec = Math.max(floor, state.capBytesPerSec * SLOW_FACTOR);
      return capBytesPerSec < state.capBytesPerSec ? { state: { ...state, capBytesPerSec, crossed: true }, change: 'slower' } : { state, change: 'same' };
    }
  }
  const room = (recent < GROW_SHARE && sinceStart < PAUSE_SHARE) || (recent <= 1 && sinceStart < GROW_SHARE);
  if (room && observedBytesPerSec >= state.capBytesPerSec / 2) {
    const grown = state.capBytesPerSec * (state.crossed ? CAREFUL_GROWTH : SLOW_START_GROWTH);
    const capBytesPerSec = Math.min(grown, limits.bytesPerSecCeiling ?? Infinity);
    if (capBytesPerSec > state.capBytesPerSec) return { state: { ...state, capBytesPerSec }, change: 'faster' };
  }
  return { state, change: 'same' };
}
