import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CopyThrottle, type ThrottleClock } from '../../src/coordinator/copyThrottle.js';
import { decideThrottle } from '../../src/coordinator/replicationWatch.js';
import { ReshardError } from '../../src/core/errors.js';
import { settleCopyProgress } from '../../src/mover/settleCopyProgress.js';

/** A clock whose sleeps advance time at once, in order: throttling logic without real waiting. */
function virtualClock(): ThrottleClock & { advance(ms: number): void } {
  let now = 0;
  return {
    nowMs: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    advance: (ms) => {
      now += ms;
    },
  };
}

describe('CopyThrottle', () => {
  it('spaces chunks so the bytes admitted never run ahead of the rate cap', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1_000, max: 100_000_000 }),
      fc.array(fc.integer({ min: 1, max: 1_000_000 }), { minLength: 1, maxLength: 50 }),
      async (bytesPerSecMax, chunks) => {
        const clock = virtualClock();
        const throttle = new CopyThrottle({ bytesPerSecMax, holdMsMax: 1_000 }, clock);
        let admitted = 0;
        for (const chunk of chunks) {
          await throttle.admit(chunk);
          admitted += chunk;
          // Every chunk but the last may be in flight: what went before it took its time.
          expect(admitted - chunk).toBeLessThanOrEqual((clock.nowMs() / 1000) * bytesPerSecMax + 1e-6);
        }
        expect(clock.nowMs()).toBeCloseTo(((admitted - chunks.at(-1)!) / bytesPerSecMax) * 1000, 6);
      },
    ));
  });

  it('lets chunks through at once without a cap', async () => {
    const clock = virtualClock();
    const throttle = new CopyThrottle({ holdMsMax: 1_000 }, clock);
    for (let i = 0; i < 100; i++) await throttle.admit(1_000_000);
    expect(clock.nowMs()).toBe(0);
  });

  it('holds copying until released', async () => {
    const throttle = new CopyThrottle({ holdMsMax: 60_000 });
    throttle.hold('subscription lags');
    expect(throttle.heldFor).toBe('subscription lags');
    let passed = false;
    const admitted = throttle.admit(10).then(() => { passed = true; });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(passed).toBe(false);
    throttle.release();
    await admitted;
    expect(passed).toBe(true);
    expect(throttle.heldFor).toBeUndefined();
  });

  it('gives up a hold that outlasts its limit with a clear error, and stops every later copy', async () => {
    const clock = virtualClock();
    const throttle = new CopyThrottle({ holdMsMax: 5_000 }, clock);
    throttle.hold('reshard_m1_s0 on n1 lags 300 MB, over 256 MB');
    const error = await throttle.admit(10).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ReshardError);
    expect((error as ReshardError).line()).toMatch(/copying was held for \d+ ms \(reshard_m1_s0 on n1 lags 300 MB, over 256 MB\), over its 5000 ms limit\. Fix: /);
    throttle.release();
    await expect(throttle.admit(10)).rejects.toBe(error);
  });

  it('fails every waiting and later copy with the error it is given', async () => {
    const throttle = new CopyThrottle({ holdMsMax: 60_000 });
    throttle.hold('lag');
    const waiting = throttle.admit(1).catch((caught: unknown) => caught);
    const stop = new Error('WAL retained over its limit');
    throttle.fail(stop);
    expect(await waiting).toBe(stop);
    await expect(throttle.admit(1)).rejects.toBe(stop);
  });
});

describe('the cap and progress count the same bytes (settleCopyProgress)', () => {
  it('charges the rest of each slot\'s measured size: progress reaches it, paced at the cap like the stream', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 100_000, max: 10_000_000 }),
      fc.array(fc.record({
        bytesTotal: fc.integer({ min: 0, max: 5_000_000 }),
        streamedShare: fc.double({ min: 0, max: 1.5, noNaN: true }),
      }), { minLength: 1, maxLength: 8 }),
      async (bytesPerSecMax, slots) => {
        const clock = virtualClock();
        const throttle = new CopyThrottle({ bytesPerSecMax, holdMsMax: 1_000 }, clock);
        let progressTotal = 0;
        let streamedTotal = 0;
        for (const slot of slots) {
          const streamed = Math.round(slot.bytesTotal * slot.streamedShare);
          // The stream passes the gate in chunks, progress clamped at the slot's size (as the movers report it).
          for (let sent = 0; sent < streamed; sent += 65_536) await throttle.admit(Math.min(65_536, streamed - sent));
          streamedTotal += streamed;
          const progress: number[] = [];
          await settleCopyProgress(throttle, streamed, slot.bytesTotal, (bytesCopied) => progress.push(bytesCopied));
          // Progress climbs to the slot's size and never past it.
          if (streamed < slot.bytesTotal) expect(progress.at(-1)).toBe(slot.bytesTotal);
          else expect(progress).toEqual([]);
          expect(progress.every((bytes, index) => bytes <= slot.bytesTotal && (index === 0 || bytes > progress[index - 1]!))).toBe(true);
          progressTotal += Math.max(streamed, slot.bytesTotal);
        }
        // Everything progress counts went through the cap: the time it took is that much at the cap (the last chunk may be in flight).
        const last = Math.min(65_536, Math.max(...slots.map((slot) => slot.bytesTotal), 1));
        expect(clock.nowMs() / 1000).toBeGreaterThanOrEqual((progressTotal - last - 262_144) / bytesPerSecMax - 1e-6);
        expect(clock.nowMs() / 1000).toBeLessThanOrEqual(progressTotal / bytesPerSecMax + 1e-6);
        // What crossed the network is still told apart.
        expect(throttle.streamedBytes).toBe(streamedTotal);
      },
    ));
  });

  it('without a gate it only reports progress', async () => {
    const progress: number[] = [];
    await settleCopyProgress(undefined, 100_000, 600_000, (bytes) => progress.push(bytes));
    expect(progress).toEqual([362_144, 600_000]);
  });
});

describe('decideThrottle (the replication watch\'s rule)', () => {
  const limits = { lagBytesMax: 1_000, walRetainedBytesMax: 1_000_000 };
  const slot = (lagBytes: number | undefined, retainedBytes = 0, slotName = 'reshard_m1_s0') => ({ node: 'n1', slotName, lagBytes, retainedBytes });

  it('holds over the lag bound, keeps holding between half and the bound, releases under half', () => {
    expect(decideThrottle([slot(1_001)], limits, false).hold).toMatch(/reshard_m1_s0 on n1 lags 1\.0 kB, over 1\.0 kB/);
    expect(decideThrottle([slot(700)], limits, true)).toEqual({});
    expect(decideThrottle([slot(700)], limits, false)).toEqual({});
    expect(decideThrottle([slot(499)], limits, true).release).toMatch(/back under/);
  });

  it('ignores slots that do not stream yet (initial copy), and holds for the worst one', () => {
    expect(decideThrottle([slot(undefined, 999_999)], limits, false)).toEqual({});
    const decision = decideThrottle([slot(10, 0, 'a'), slot(5_000, 0, 'b'), slot(undefined, 0, 'c')], limits, false);
    expect(decision.hold).toMatch(/^b on n1/);
  });

  it('stops the migration when a source retains too much WAL, whatever the lag', () => {
    fc.assert(fc.property(fc.option(fc.integer({ min: 0, max: 5_000 }), { nil: undefined }), fc.boolean(), (lagBytes, held) => {
      const decision = decideThrottle([slot(lagBytes, 1_000_001)], limits, held);
      expect(decision.stop?.line()).toMatch(/^n1 retains 1\.0 MB of WAL for reshard_m1_s0, over the 1\.0 MB limit\. Fix: /);
    }));
  });
});
