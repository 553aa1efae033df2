import { describe, expect, it } from 'vitest';
import { CoalescedRuns } from '../../src/plumbing/coalescedRuns.js';

describe('CoalescedRuns', () => {
  it('runs one at a time, and requests made during a run make exactly one more run after it', async () => {
    let running = 0;
    let most = 0;
    let runs = 0;
    let afterRuns = 0;
    const coalesced = new CoalescedRuns(async () => {
      running++;
      most = Math.max(most, running);
      runs++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
    }, () => false, () => { afterRuns++; });
    const first = coalesced.request();
    const during = [coalesced.request(), coalesced.request(), coalesced.request()];
    await Promise.all([first, ...during]);
    expect(most).toBe(1);
    expect(runs).toBe(2);
    expect(afterRuns).toBe(1);
    await coalesced.request();
    expect(runs).toBe(3);
  });

  it('makes no run after the current one once stopped', async () => {
    let runs = 0;
    let stopped = false;
    const coalesced = new CoalescedRuns(async () => {
      runs++;
      stopped = true;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }, () => stopped);
    await Promise.all([coalesced.request(), coalesced.request()]);
    expect(runs).toBe(1);
  });
});
