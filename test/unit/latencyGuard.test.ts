import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nextGuardStep, type GuardControlState } from '../../src/coordinator/latencyGuardControl.js';
import { interpolatedPercentileMs, LATENCY_BUCKETS, latencyBucket } from '../../src/core/latencyHistogram.js';

const limits = { impactMax: 1.2, bytesPerSecFloor: 65_536, bytesPerSecCeiling: undefined, pauseMsMax: 30_000 };
const start: GuardControlState = { capBytesPerSec: 1_000_000, paused: false, pausedSinceMs: 0, crossed: false };

describe('latency guard: pause, resume and rate cap from the other slots\' p99 against the baseline', () => {
  it('starts slow and grows fast while well under the bound, pauses at once over it with half the cap, resumes under it, then grows carefully', () => {
    let state = start;
    const grown = nextGuardStep(state, { ratio: 1.0, observedBytesPerSec: 900_000, nowMs: 0 }, limits);
    expect(grown).toEqual({ state: { ...start, capBytesPerSec: 1_500_000 }, change: 'faster' });
    // A cap the copies did not use does not grow (nothing was learned about it).
    expect(nextGuardStep(grown.state, { ratio: 1.0, observedBytesPerSec: 100_000, nowMs: 1 }, limits).change).toBe('same');
    // Between 85 % of the bound and the bound: stays.
    expect(nextGuardStep(grown.state, { ratio: 1.1, observedBytesPerSec: 1_500_000, nowMs: 1 }, limits).change).toBe('same');
    const paused = nextGuardStep(grown.state, { ratio: 1.3, observedBytesPerSec: 1_500_000, nowMs: 1_000 }, limits);
    expect(paused).toEqual({ state: { capBytesPerSec: 750_000, paused: true, pausedSinceMs: 1_000, crossed: true }, change: 'paused' });
    state = paused.state;
    expect(nextGuardStep(state, { ratio: 1.5, observedBytesPerSec: 0, nowMs: 2_000 }, limits)).toEqual({ state, change: 'same' });
    const resumed = nextGuardStep(state, { ratio: 1.19, observedBytesPerSec: 0, nowMs: 3_000 }, limits);
    expect(resumed).toEqual({ state: { ...state, paused: false }, change: 'resumed' });
    const careful = nextGuardStep(resumed.state, { ratio: 0.9, observedBytesPerSec: 750_000, nowMs: 4_000 }, limits);
    expect(careful.change).toBe('faster');
    expect(careful.state.capBytesPerSec).toBeCloseTo(750_000 * 1.125);
  });

  it('bounds a pause: past pauseMsMax over the bound, copies crawl at the floor for a step, then pause again', () => {
    const paused: GuardControlState = { capBytesPerSec: 500_000, paused: true, pausedSinceMs: 0, crossed: true };
    const crawl = nextGuardStep(paused, { ratio: 3, observedBytesPerSec: 0, nowMs: 30_000 }, limits);
    expect(crawl).toEqual({ state: { ...paused, paused: false, capBytesPerSec: 65_536 }, change: 'crawl' });
    expect(nextGuardStep(crawl.state, { ratio: 3, observedBytesPerSec: 65_536, nowMs: 31_000 }, limits).change).toBe('paused');
  });

  it('never lets copies run over the bound, never goes below the floor or above the operator\'s cap', () => {
    const state = fc.record({ capBytesPerSec: fc.integer({ min: 65_536, max: 1e9 }), paused: fc.boolean(), pausedSinceMs: fc.integer({ min: 0, max: 1e6 }), crossed: fc.boolean() });
    fc.assert(fc.property(state, fc.double({ min: 0, max: 100, noNaN: true }), fc.integer({ min: 0, max: 1e9 }), fc.option(fc.integer({ min: 65_536, max: 1e9 }), { nil: undefined }), (before, ratio, observed, ceiling) => {
      const capped = { ...limits, bytesPerSecCeiling: ceiling };
      const from = { ...before, capBytesPerSec: Math.min(before.capBytesPerSec, ceiling ?? Infinity) };
      const nowMs = from.pausedSinceMs + 1_000;
      const next = nextGuardStep(from, { ratio, observedBytesPerSec: observed, nowMs }, capped);
      if (ratio > limits.impactMax) expect(next.state.paused).toBe(true);
      if (ratio <= limits.impactMax) expect(next.state.paused).toBe(false);
      expect(next.state.capBytesPerSec).toBeGreaterThanOrEqual(limits.bytesPerSecFloor);
      expect(next.state.capBytesPerSec).toBeLessThanOrEqual(Math.max(from.capBytesPerSec, ceiling ?? Infinity));
      if (ratio >= limits.impactMax * 0.85) expect(next.state.capBytesPerSec).toBeLessThanOrEqual(from.capBytesPerSec);
    }));
  });
});

describe('interpolatedPercentileMs', () => {
  it('lies within the bucket of the exact nearest-rank percentile, and is undefined without calls', () => {
    expect(interpolatedPercentileMs(new Array<number>(LATENCY_BUCKETS).fill(0), 0.99)).toBeUndefined();
    fc.assert(fc.property(fc.array(fc.double({ min: 0.06, max: 20_000, noNaN: true }), { minLength: 1, maxLength: 400 }), (latencies) => {
      const counts = new Array<number>(LATENCY_BUCKETS).fill(0);
      for (const ms of latencies) counts[latencyBucket(ms)]!++;
      const sorted = [...latencies].sort((a, b) => a - b);
      const exact = sorted[Math.max(1, Math.ceil(sorted.length * 0.99)) - 1]!;
      const estimate = interpolatedPercentileMs(counts, 0.99)!;
      expect(estimate).toBeGreaterThanOrEqual(exact / 2 ** 0.25 * 0.999999);
      expect(estimate).toBeLessThanOrEqual(exact * 2 ** 0.25 * 1.000001);
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

describe('CopyThrottle.pause', () => {
  it('holds every copy until resume, with no time limit of its own, and a release of a hold does not end it', async () => {
    const { CopyThrottle } = await import('../../src/coordinator/copyThrottle.js');
    const throttle = new CopyThrottle({ holdMsMax: 50 });
    throttle.pause('p99 over the bound');
    let passed = false;
    const admitted = throttle.admit(1_000).then(() => { passed = true; });
    throttle.release();
    await new Promise((resolve) => setTimeout(resolve, 400));
    // Past holdMsMax: still waiting, not failed.
    expect(passed).toBe(false);
    expect(throttle.pausedFor).toBe('p99 over the bound');
    throttle.resume();
    await admitted;
    expect(passed).toBe(true);
    expect(throttle.admittedBytes).toBe(1_000);
  });
});
