import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FREEZE_PHASES, freezeRoundTrips, phaseDurationsMs, summarizeFreezePhases, summarizeFreezeRoundTrips } from '../../src/catalog/freezePhases.js';

describe('freeze phases', () => {
  it('turns the journaled marks (ms since the freeze began) into each phase\'s duration', () => {
    expect(phaseDurationsMs({ acked: 13, fenced: 17, replayed: 21, verified: 53, attached: 65, switched: 72 }))
      .toEqual({ acked: 13, fenced: 4, replayed: 4, verified: 32, attached: 12, switched: 7 });
  });

  it('leaves out phases the journal lacks, and ignores what is not a phase', () => {
    expect(phaseDurationsMs({ acked: 5, fenced: 9, other: 100 })).toEqual({ acked: 5, fenced: 4 });
  });

  it('the durations of a full freeze add up to its last mark', () => {
    fc.assert(fc.property(fc.array(fc.nat(1_000), { minLength: FREEZE_PHASES.length, maxLength: FREEZE_PHASES.length }), (steps) => {
      let at = 0;
      const marks = Object.fromEntries(FREEZE_PHASES.map((phase, index) => [phase, (at += steps[index]!)]));
      const durations = phaseDurationsMs(marks);
      expect(Object.values(durations).reduce((sum, ms) => sum + ms, 0)).toBe(at);
      expect(Object.keys(durations)).toEqual([...FREEZE_PHASES]);
    }));
  });

  it('a phase the freeze did not have (an online move attaches before it) adds nothing: the next one counts from the last mark before it', () => {
    expect(phaseDurationsMs({ acked: 13, fenced: 17, replayed: 21, verified: 53, switched: 60 }))
      .toEqual({ acked: 13, fenced: 4, replayed: 4, verified: 32, switched: 7 });
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(1_000), fc.boolean()), { minLength: FREEZE_PHASES.length, maxLength: FREEZE_PHASES.length }), (steps) => {
      let at = 0;
      const marks: Record<string, number> = {};
      FREEZE_PHASES.forEach((phase, index) => {
        at += steps[index]![0];
        if (steps[index]![1]) marks[phase] = at;
      });
      const durations = phaseDurationsMs(marks);
      expect(Object.values(durations).reduce((sum, ms) => sum + ms, 0)).toBe(Math.max(0, ...Object.values(marks)));
      expect(Object.keys(durations)).toEqual(FREEZE_PHASES.filter((phase) => phase in marks));
    }));
  });

  it('summarizes p50 and max per phase over the moves', () => {
    const summary = summarizeFreezePhases([{ acked: 10, fenced: 2 }, { acked: 30, fenced: 4 }, { acked: 20 }]);
    expect(summary).toEqual({ acked: { p50: 20, max: 30 }, fenced: { p50: 2, max: 4 } });
    expect(summarizeFreezePhases([])).toEqual({});
  });

  it('turns the journaled round-trip counts at each phase\'s end into a total and a count per phase', () => {
    const trips = freezeRoundTrips({ acked: 2, fenced: 3, replayed: 5, verified: 6, attached: 8, switched: 10 });
    expect(trips).toEqual({ total: 10, byPhase: { acked: 2, fenced: 1, replayed: 2, verified: 1, attached: 2, switched: 2 } });
    expect(freezeRoundTrips({})).toEqual({ total: 0, byPhase: {} });
    expect(summarizeFreezeRoundTrips([trips, freezeRoundTrips({ acked: 4, fenced: 5, switched: 20 })]))
      .toEqual({ total: { p50: 10, max: 20 }, byPhase: expect.objectContaining({ acked: { p50: 2, max: 4 }, fenced: { p50: 1, max: 1 } }) });
  });
});
