import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nextRateCap } from '../../src/coordinator/latencyGuard.js';

const limits = { impactMax: 1.2, bytesPerSecFloor: 65_536 };

describe('latency guard: rate cap from the other slots\' p99 against the baseline', () => {
  it('halves from the observed rate when over the limit, down to the floor, then grows back and uncaps', () => {
    let state: { capBytesPerSec: number | undefined } = { capBytesPerSec: undefined };
    const over = nextRateCap(state, 1.5, 8_000_000, limits);
    expect(over).toEqual({ capBytesPerSec: 4_000_000, change: 'slower' });
    state = over;
    for (let i = 0; i < 20; i++) state = nextRateCap(state, 2, 100_000, limits);
    expect(state.capBytesPerSec).toBe(65_536);
    expect(nextRateCap(state, 2, 0, limits).change).toBe('same');
    // Within the limit but above 90 % of it: holds where it is.
    expect(nextRateCap(state, 1.1, 65_536, limits)).toEqual({ capBytesPerSec: 65_536, change: 'same' });
    const faster = nextRateCap(state, 1.0, 65_536, limits);
    expect(faster).toEqual({ capBytesPerSec: 98_304, change: 'faster' });
    state = faster;
    for (let i = 0; i < 10 && state.capBytesPerSec !== undefined; i++) state = nextRateCap(state, 1.0, 65_536, limits);
    expect(state.capBytesPerSec).toBeUndefined();
  });

  it('never raises the cap while over the limit, never goes below the floor', () => {
    fc.assert(fc.property(fc.option(fc.integer({ min: 65_536, max: 1e9 }), { nil: undefined }), fc.double({ min: 1.2000001, max: 100, noNaN: true }), fc.integer({ min: 0, max: 1e9 }), (cap, ratio, observed) => {
      const next = nextRateCap({ capBytesPerSec: cap }, ratio, observed, limits);
      expect(next.capBytesPerSec).toBeDefined();
      expect(next.capBytesPerSec!).toBeGreaterThanOrEqual(limits.bytesPerSecFloor);
      if (cap !== undefined) expect(next.capBytesPerSec!).toBeLessThanOrEqual(cap);
    }));
  });
});

describe('CopyThrottle.setBytesPerSecMax', () => {
  it('paces copies at the new cap while they run, and not at all once it is lifted', async () => {
    const { CopyThrottle } = await import('../../src/coordinator/copyThrottle.js');
    let nowMs = 0;
    const slept: number[] = [];
    const throttle = new CopyThrottle({ holdMsMax: 1_000 }, { nowMs: () => nowMs, sleep: async (ms) => { slept.push(ms); nowMs += ms; } });
    await throttle.admit(1_000_000);
    expect(slept).toEqual([]);
    throttle.setBytesPerSecMax(1_000_000);
    await throttle.admit(1_000_000);
    await throttle.admit(1_000_000);
    // The second chunk waits for the first one's second at 1 MB/s.
    expect(slept).toEqual([1_000]);
    throttle.setBytesPerSecMax(undefined);
    await throttle.admit(50_000_000);
    await throttle.admit(50_000_000);
    expect(slept).toEqual([1_000]);
  });
});
