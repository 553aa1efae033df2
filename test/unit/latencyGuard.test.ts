import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nextGuardStep, type GuardControlState } from '../../src/coordinator/latencyGuardControl.js';
import { interpolatedPercentileMs, LATENCY_BUCKETS, latencyBucket } from '../../src/core/latencyHistogram.js';

const limits = { bytesPerSecFloor: 65_536, bytesPerSecCeiling: undefined, pauseMsMax: 30_000 };
const start: GuardControlState = { capBytesPerSec: 1_000_000, paused: false, pausedSinceMs: 0, crossed: false };

describe('latency guard: pause, slow down, resume and grow from recent and since-start latency against the limit', () => {
  it('starts slow and grows fast with room, pauses at once over the limit when the migration has no margin left, resumes within it, then grows carefully', () => {
    const grown = nextGuardStep(start, { recent: 0.8, sinceStart: 0.8, observedBytesPerSec: 900_000, nowMs: 0 }, limits);
    expect(grown).toEqual({ state: { ...start, capBytesPerSec: 1_500_000 }, change: 'faster' });
    // A cap the copies did not use does not grow (nothing was learned about it).
    expect(nextGuardStep(grown.state, { recent: 0.8, sinceStart: 0.8, observedBytesPerSec: 100_000, nowMs: 1 }, limits).change).toBe('same');
    // Close to the limit on both: stays.
    expect(nextGuardStep(grown.state, { recent: 0.95, sinceStart: 0.9, observedBytesPerSec: 1_500_000, nowMs: 1 }, limits).change).toBe('same');
    const paused = nextGuardStep(grown.state, { recent: 1.3, sinceStart: 1.0, observedBytesPerSec: 1_500_000, nowMs: 1_000 }, limits);
    expect(paused).toEqual({ state: { capBytesPerSec: 750_000, paused: true, pausedSinceMs: 1_000, crossed: true }, change: 'paused' });
    const state = paused.state;
    expect(nextGuardStep(state, { recent: 1.5, sinceStart: 1.0, observedBytesPerSec: 0, nowMs: 2_000 }, limits)).toEqual({ state, change: 'same' });
    const resumed = nextGuardStep(state, { recent: 0.99, sinceStart: 1.0, observedBytesPerSec: 0, nowMs: 3_000 }, limits);
    expect(resumed).toEqual({ state: { ...state, paused: false }, change: 'resumed' });
    const careful = nextGuardStep(resumed.state, { recent: 0.7, sinceStart: 0.9, observedBytesPerSec: 750_000, nowMs: 4_000 }, limits);
    expect(careful.change).toBe('faster');
    expect(careful.state.capBytesPerSec).toBeCloseTo(750_000 * 1.125);
  });

  it('spends the margin the migration earned: a recent jump over the limit only slows copies while the whole migration is getting close, and is let pass while it is far under', () => {
    const slower = nextGuardStep(start, { recent: 1.4, sinceStart: 0.9, observedBytesPerSec: 1_000_000, nowMs: 0 }, limits);
    expect(slower).toEqual({ state: { ...start, capBytesPerSec: 700_000, crossed: true }, change: 'slower' });
    expect(nextGuardStep(start, { recent: 1.4, sinceStart: 0.6, observedBytesPerSec: 1_000_000, nowMs: 0 }, limits).change).toBe('same');
    // Paused, and the whole migration went well under the limit meanwhile: it resumes even if the last seconds are noisy.
    const paused: GuardControlState = { ...start, paused: true, crossed: true };
    expect(nextGuardStep(paused, { recent: 1.4, sinceStart: 0.8, observedBytesPerSec: 0, nowMs: 1_000 }, limits).change).toBe('resumed');
  });

  it('bounds a pause: past pauseMsMax over the limit, copies crawl at the floor for a step, then pause again', () => {
    const paused: GuardControlState = { capBytesPerSec: 500_000, paused: true, pausedSinceMs: 0, crossed: true };
    const crawl = nextGuardStep(paused, { recent: 3, sinceStart: 2, observedBytesPerSec: 0, nowMs: 30_000 }, limits);
    expect(crawl).toEqual({ state: { ...paused, paused: false, capBytesPerSec: 65_536 }, change: 'crawl' });
    expect(nextGuardStep(crawl.state, { recent: 3, sinceStart: 2, observedBytesPerSec: 65_536, nowMs: 31_000 }, limits).change).toBe('paused');
  });

  it('never lets copies run on over the limit once the migration is at it, never goes below the floor or above the operator\'s cap, never speeds up over the limit', () => {
    const state = fc.record({ capBytesPerSec: fc.integer({ min: 65_536, max: 1e9 }), paused: fc.boolean(), pausedSinceMs: fc.integer({ min: 0, max: 1e6 }), crossed: fc.boolean() });
    const ratio = fc.double({ min: 0, max: 10, noNaN: true });
    fc.assert(fc.property(state, ratio, ratio, fc.integer({ min: 0, max: 1e9 }), fc.option(fc.integer({ min: 65_536, max: 1e9 }), { nil: undefined }), (before, recent, sinceStart, observed, ceiling) => {
      const capped = { ...limits, bytesPerSecCeiling: ceiling };
      const from = { ...before, capBytesPerSec: Math.min(before.capBytesPerSec, ceiling ?? Infinity) };
      const nowMs = from.pausedSinceMs + 1_000;
      const next = nextGuardStep(from, { recent, sinceStart, observedBytesPerSec: observed, nowMs }, capped);
      if (recent > 1 && sinceStart >= 0.95) expect(next.state.paused).toBe(true);
      if (recent <= 1) expect(next.state.paused).toBe(false);
      expect(next.state.capBytesPerSec).toBeGreaterThanOrEqual(limits.bytesPerSecFloor);
      expect(next.state.capBytesPerSec).toBeLessThanOrEqual(Math.max(from.capBytesPerSec, ceiling ?? Infinity));
      if (recent > 1) expect(next.state.capBytesPerSec).toBeLessThanOrEqual(from.capBytesPerSec);
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
