import { describe, expect, it } from 'vitest';
import { rebalancePhases, type JournalMark } from '../../bench/rebalancePhases.js';

/** [slot, step, action, ms] in journal order. */
function marks(...entries: [number, string, string, number][]): JournalMark[] {
  return entries.map(([slot, step, action, atMs]) => ({ slot, step, action, atMs }));
}

/** One move's whole life: prepare 0–100, stream 100–1000 (copy ends at 800), freeze/sync/attach/switch 1200–1260, cleanup 1500–1700. */
function move(slot: number, offsetMs: number): [number, string, string, number][] {
  const at = (ms: number): number => ms + offsetMs;
  return [
    [slot, 'prepare', 'begin', at(0)], [slot, 'prepare', 'done', at(100)],
    [slot, 'stream', 'begin', at(100)], [slot, 'stream', 'done', at(1000)],
    [slot, 'freeze', 'begin', at(1200)], [slot, 'freeze', 'done', at(1210)], [slot, 'sync', 'begin', at(1210)], [slot, 'sync', 'done', at(1240)],
    [slot, 'attach', 'begin', at(1240)], [slot, 'attach', 'done', at(1250)], [slot, 'switch', 'begin', at(1250)], [slot, 'switch', 'done', at(1260)],
    [slot, 'cleanup', 'begin', at(1500)], [slot, 'cleanup', 'done', at(1700)],
  ];
}

describe('rebalancePhases: where the seconds of a rebalance went', () => {
  it('splits one move into its phases and waits, which add up to its whole life', () => {
    const result = rebalancePhases(marks(...move(7, 0)), new Map([[7, 800]]), 0, 1700);
    const summed = Object.fromEntries(Object.entries(result.phases).map(([phase, seconds]) => [phase, seconds.summed_seconds]));
    expect(summed).toEqual({ prepare: 0.1, copy: 0.7, catch_up: 0.2, wait_before_cutover: 0.2, cutover: 0.06, wait_before_cleanup: 0.24, cleanup: 0.2 });
    expect(Object.values(summed).reduce((sum, seconds) => sum + seconds, 0)).toBeCloseTo(1.7, 6);
    expect(result.seconds_with_no_step_running).toBe(0.44);
  });

  it('wall time runs from the first begin to the last done; summed adds the moves; union counts overlap once', () => {
    const result = rebalancePhases(marks(...move(1, 0), ...move(2, 50)), new Map([[1, 800], [2, 850]]), 0, 1750);
    expect(result.phases['copy']).toMatchObject({ wall_seconds: 0.75, summed_seconds: 1.4, union_seconds: 0.75, from_s: 0.1, to_s: 0.85, moves: 2 });
    expect(result.phases['cutover']).toMatchObject({ wall_seconds: 0.11, summed_seconds: 0.12, union_seconds: 0.11, moves: 2 });
  });

  it('without a copy end the whole stream is copy; an unknown step keeps its own name', () => {
    const result = rebalancePhases(marks([3, 'stream', 'begin', 0], [3, 'stream', 'done', 500], [3, 'verify_snapshot', 'begin', 500], [3, 'verify_snapshot', 'done', 650]), new Map(), 0, 650);
    expect(Object.keys(result.phases)).toEqual(['copy', 'verify_snapshot']);
    expect(result.phases['copy']!.summed_seconds).toBe(0.5);
    expect(result.phases['verify_snapshot']!.summed_seconds).toBe(0.15);
  });

  it('an abandoned cutover attempt counts as cutover time and as one abandoned attempt', () => {
    const result = rebalancePhases(marks(
      [4, 'freeze', 'begin', 0], [4, 'freeze', 'done', 10], [4, 'sync', 'begin', 10],
      [4, 'attach', 'undo', 300], [4, 'sync', 'undo', 300], [4, 'freeze', 'undo', 300], [4, 'attach', 'undone', 320], [4, 'sync', 'undone', 320], [4, 'freeze', 'undone', 320],
      [4, 'freeze', 'begin', 600], [4, 'freeze', 'done', 610], [4, 'sync', 'begin', 610], [4, 'sync', 'done', 640],
    ), new Map(), 0, 640);
    expect(result.cutover_attempts_abandoned).toBe(1);
    expect(result.phases['cutover']!.summed_seconds).toBe(0.34);
  });
});
