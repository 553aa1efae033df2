/**
 * The latency guard's decision at one poll, pure: from the ratio of the other
 * slots' p99 now to the baseline, whether copies pause, go on, or may go
 * faster, and at what rate cap.
 *
 * Over the bound, copies pause at once (slowing down alone lets the damage
 * run on for as long as the feedback takes) and the cap they resume at is
 * halved; at or under it, a paused copy resumes; well under it, the cap grows
 * — by half per step until the first time the bound was crossed (slow start:
 * copies begin slow, not at full speed), by an eighth after — and only if the
 * copies used most of it (a cap nobody reaches says nothing). A pause lasting
 * `pauseMsMax` lets copies crawl at the floor for a step, so that a baseline
 * that no longer holds (other load arrived) cannot stop a migration for good.
 */
export interface GuardControlLimits {
  impactMax: number;
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
  /** The bound has been crossed at least once: growth is careful from then on. */
  crossed: boolean;
}

export type GuardChange = 'paused' | 'resumed' | 'crawl' | 'faster' | 'same';

/** Under this share of the bound, the cap may grow. */
export const GROW_BELOW_SHARE = 0.85;
const SLOW_START_GROWTH = 1.5;
const CAREFUL_GROWTH = 1.125;

export function nextGuardStep(
  state: GuardControlState,
  reading: { ratio: number; observedBytesPerSec: number; nowMs: number },
  limits: GuardControlLimits,
): { state: GuardControlState; change: GuardChange } {
  const { ratio, observedBytesPerSec, nowMs } = reading;
  if (ratio > limits.impactMax) {
    if (!state.paused) {
      return { state: { capBytesPerSec: Math.max(limits.bytesPerSecFloor, state.capBytesPerSec / 2), paused: true, pausedSinceMs: nowMs, crossed: true }, change: 'paused' };
    }
    if (nowMs - state.pausedSinceMs >= limits.pauseMsMax) {
      return { state: { ...state, capBytesPerSec: limits.bytesPerSecFloor, paused: false }, change: 'crawl' };
    }
    return { state, change: 'same' };
  }
  if (state.paused) return { state: { ...state, paused: false }, change: 'resumed' };
  if (ratio < limits.impactMax * GROW_BELOW_SHARE && observedBytesPerSec >= state.capBytesPerSec / 2) {
    const grown = state.capBytesPerSec * (state.crossed ? CAREFUL_GROWTH : SLOW_START_GROWTH);
    const capBytesPerSec = Math.min(grown, limits.bytesPerSecCeiling ?? Infinity);
    if (capBytesPerSec > state.capBytesPerSec) return { state: { ...state, capBytesPerSec }, change: 'faster' };
  }
  return { state, change: 'same' };
}
