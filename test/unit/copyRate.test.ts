import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CopyRate, formatEta } from '../../src/cli/copyRate.js';

describe('CopyRate (the progress bar\'s rate and ETA)', () => {
  it('is unknown at first, then the rate over the last window, and an ETA from it', () => {
    const rate = new CopyRate(5_000, 1_000);
    rate.record(0, 0);
    expect(rate.bytesPerSec(500)).toBeUndefined();
    expect(rate.etaSeconds(500, 10_000_000)).toBeUndefined();
    for (let second = 1; second <= 10; second++) rate.record(second * 1000, second * 1_000_000);
    expect(rate.bytesPerSec(10_000)).toBeCloseTo(1_000_000, 0);
    expect(rate.etaSeconds(10_000, 14_000_000)).toBeCloseTo(4, 5);
  });

  it('follows a change of speed within the window, and says nothing when copying stalls at zero', () => {
    const rate = new CopyRate(5_000, 1_000);
    let bytes = 0;
    for (let second = 0; second <= 20; second++) {
      bytes += second <= 10 ? 4_000_000 : 1_000_000;
      rate.record(second * 1000, bytes);
    }
    expect(rate.bytesPerSec(20_000)).toBeCloseTo(1_000_000, 0);
    const stalled = new CopyRate(5_000, 1_000);
    for (let second = 0; second <= 10; second++) stalled.record(second * 1000, 7);
    expect(stalled.bytesPerSec(10_000)).toBe(0);
    expect(stalled.etaSeconds(10_000, 100)).toBeUndefined();
  });

  it('never gives a negative, infinite or NaN rate or ETA', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 0, max: 1e9 })), { maxLength: 50 }), fc.integer({ min: 0, max: 2e9 }), (steps, total) => {
      const rate = new CopyRate();
      let now = 0;
      let bytes = 0;
      for (const [ms, more] of steps) {
        now += ms;
        bytes += more;
        rate.record(now, bytes);
        const perSec = rate.bytesPerSec(now);
        const eta = rate.etaSeconds(now, total);
        if (perSec !== undefined) expect(Number.isFinite(perSec) && perSec >= 0).toBe(true);
        if (eta !== undefined) expect(Number.isFinite(eta) && eta >= 0).toBe(true);
        expect(formatEta(eta)).toMatch(/^(–|\d+s|\d+m\d\ds|\d+h\d\dm)$/);
      }
    }));
  });

  it('formats an ETA for people', () => {
    expect(formatEta(undefined)).toBe('–');
    expect(formatEta(Number.POSITIVE_INFINITY)).toBe('–');
    expect(formatEta(0.2)).toBe('1s');
    expect(formatEta(65)).toBe('1m05s');
    expect(formatEta(7_620)).toBe('2h07m');
  });
});
