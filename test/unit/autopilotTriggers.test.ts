import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { insideWindows, parseTimeWindow } from '../../src/core/timeWindows.js';
import { ReshardError } from '../../src/core/errors.js';
import { loadTriggers, nodeShares } from '../../src/planner/index.js';

const at = (hhmm: string): Date => new Date(`2026-11-30T${hhmm}:00Z`);

describe('time windows (UTC)', () => {
  it('holds inside a range, wraps past midnight, and any of several counts', () => {
    const night = parseTimeWindow('01:00-05:00');
    expect(insideWindows([night], at('00:59'))).toBe(false);
    expect(insideWindows([night], at('01:00'))).toBe(true);
    expect(insideWindows([night], at('04:59'))).toBe(true);
    expect(insideWindows([night], at('05:00'))).toBe(false);
    const wrapping = parseTimeWindow('22:30-02:00');
    expect(insideWindows([wrapping], at('23:00'))).toBe(true);
    expect(insideWindows([wrapping], at('01:59'))).toBe(true);
    expect(insideWindows([wrapping], at('12:00'))).toBe(false);
    expect(insideWindows([night, parseTimeWindow('12:00-13:00')], at('12:30'))).toBe(true);
    expect(insideWindows([], at('12:30'))).toBe(true);
    expect(insideWindows([parseTimeWindow('00:00-24:00')], at('23:59'))).toBe(true);
  });

  it('refuses a malformed or empty range with one line and a fix', () => {
    for (const bad of ['1-5', '01:00', '05:00-05:00', '25:00-01:00', '01:60-02:00']) {
      const error = (() => { try { parseTimeWindow(bad); } catch (caught) { return caught; } return undefined; })();
      expect(error).toBeInstanceOf(ReshardError);
      expect((error as ReshardError).line()).toMatch(/^--window must be a UTC time range like 01:00-05:00 .*Fix: pass e\.g\. --window 01:00-05:00$/);
    }
  });
});

describe('load triggers (hysteresis)', () => {
  const nodes = ['a', 'b', 'c'].map((name) => ({ name, weight: 1 }));
  const period = (loads: Record<string, number>) => nodeShares(nodes, Object.entries(loads).map(([owner, load], slot) => ({ slot, owner, load, bytes: 0 })));

  it('fires only when a node is over its share (tolerance and floor) in every one of the last N periods', () => {
    const settings = { tolerance: 0.1, loadFloor: 5, sustainPeriods: 3 };
    const hot = period({ a: 200, b: 50, c: 50 });
    const calm = period({ a: 100, b: 100, c: 100 });
    expect(loadTriggers([hot, hot, hot], settings).find((t) => t.node === 'a')!.fired).toBe(true);
    // Not sustained: one calm period among the last three.
    const interrupted = loadTriggers([hot, calm, hot], settings).find((t) => t.node === 'a')!;
    expect(interrupted.fired).toBe(false);
    expect(interrupted.periodsOver).toBe(2);
    expect(interrupted.reason).toMatch(/over its share in 2 of the last 3 periods/);
    // Too few periods measured.
    expect(loadTriggers([hot, hot], settings).find((t) => t.node === 'a')!.fired).toBe(false);
    // Beyond the relative threshold but under the absolute floor: quiet.
    const tiny = period({ a: 2, b: 0.5, c: 0.5 });
    expect(loadTriggers([tiny, tiny, tiny], settings).some((t) => t.fired)).toBe(false);
  });

  it('never fires for a node within (1 + tolerance) of its share in the latest period', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(1000), fc.nat(1000), fc.nat(1000)), { minLength: 1, maxLength: 5 }), fc.double({ min: 0, max: 1, noNaN: true }), (loads, tolerance) => {
      const periods = loads.map(([a, b, c]) => period({ a, b, c }));
      for (const trigger of loadTriggers(periods, { tolerance, loadFloor: 0, sustainPeriods: loads.length })) {
        if (trigger.fired) expect(trigger.ratios[0]).toBeGreaterThan(1 + tolerance);
      }
    }));
  });
});
