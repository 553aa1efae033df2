import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bucketUpperMs, latencyBucket, SlotLoadMeter } from '../../src/router/slotLoadMeter.js';

describe('SlotLoadMeter', () => {
  it('counts calls and rows written per slot, and reports only slots with calls', () => {
    const meter = new SlotLoadMeter(4);
    meter.record(2, 1, { command: 'INSERT', rowCount: 3 });
    meter.record(2, 1, { command: 'SELECT', rowCount: 10 });
    meter.record(1000, 5, { command: 'DELETE', rowCount: 1 });
    meter.record(1000, 5, undefined);
    const samples = meter.take();
    expect(samples.map((s) => [s.slot, s.calls, s.rowsWritten])).toEqual([[2, 2, 3], [1000, 2, 1]]);
    expect(meter.take()).toEqual([]);
  });

  it('reports percentiles within one bucket (≤ 19 % high) of the exact ones', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: 0.06, max: 20_000, noNaN: true }), { minLength: 1, maxLength: 300 }), (latencies) => {
      const meter = new SlotLoadMeter(1);
      for (const ms of latencies) meter.record(0, ms, null);
      const [sample] = meter.take();
      const sorted = [...latencies].sort((a, b) => a - b);
      const exact = (fraction: number): number => sorted[Math.max(1, Math.ceil(sorted.length * fraction)) - 1]!;
      for (const [reported, fraction] of [[sample!.p50Ms, 0.5], [sample!.p99Ms, 0.99]] as const) {
        expect(reported).toBeGreaterThanOrEqual(exact(fraction) * 0.999999);
        expect(reported).toBeLessThanOrEqual(exact(fraction) * 2 ** 0.25 * 1.000001);
      }
    }));
  });

  it('puts a latency in the bucket whose upper edge is just above it', () => {
    fc.assert(fc.property(fc.double({ min: 0.051, max: 40_000, noNaN: true }), (ms) => {
      const bucket = latencyBucket(ms);
      expect(bucketUpperMs(bucket)).toBeGreaterThanOrEqual(ms * 0.999999);
      expect(bucketUpperMs(bucket - 1)).toBeLessThan(ms * 1.000001);
    }));
  });
});
