/**
 * Where the seconds of a rebalance went, per phase, from the catalog's
 * journal (every step's 'begin' and 'done' per slot, with timestamps).
 *
 * Phases: prepare (the target's leaves), copy (the snapshot copy), catch_up
 * (the subscription following the source until close), cutover (freeze, final
 * sync and verification, attach, switch) and cleanup; and the two waits of a
 * move between them (copied but not yet frozen; switched but not yet cleaned
 * up). The journal has one 'stream' step for copy + catch-up: the copy's end
 * per slot comes from the coordinator's event that the slot's bytes are all
 * copied. A step this list does not know is reported under its own name, so
 * a renamed or new step shows up instead of vanishing.
 */
import { WHOLE_MOVE_STEP } from '../src/catalog/journal.js';

export interface JournalMark {
  slot: number;
  step: string;
  action: string;
  atMs: number;
}

/** Wall: first begin to last done over the migration; summed: over every move; union: time at least one move was in it. */
export interface PhaseSeconds {
  wall_seconds: number;
  summed_seconds: number;
  union_seconds: number;
  /** When the phase ran, seconds since the rebalance began. */
  from_s: number;
  to_s: number;
  moves: number;
}

export interface PhaseBreakdown {
  phases: Record<string, PhaseSeconds>;
  /** Cutover attempts abandoned (over the freeze budget, lock timeout) and retried. */
  cutover_attempts_abandoned: number;
  /** Rebalance seconds in which no move was in any journaled step: the coordinator's own work between steps. */
  seconds_with_no_step_running: number;
}

const PHASE_OF_STEP: Readonly<Record<string, string>> = {
  prepare: 'prepare',
  stream: 'copy',
  freeze: 'cutover',
  sync: 'cutover',
  attach: 'cutover',
  switch: 'cutover',
  cleanup: 'cleanup',
};

const PHASE_ORDER = ['prepare', 'copy', 'catch_up', 'wait_before_cutover', 'cutover', 'wait_before_cleanup', 'cleanup'];

interface Interval {
  phase: string;
  slot: number;
  fromMs: number;
  toMs: number;
}

/** Steps run begin → done; an undo or failure of a step (or of the whole move) also ends it. */
function stepIntervals(marks: readonly JournalMark[]): { intervals: { step: string; slot: number; fromMs: number; toMs: number }[]; abandoned: number } {
  const open = new Map<string, number>();
  const intervals: { step: string; slot: number; fromMs: number; toMs: number }[] = [];
  let abandoned = 0;
  for (const mark of marks) {
    const key = `${mark.slot}/${mark.step}`;
    if (mark.action === 'begin') {
      open.set(key, mark.atMs);
      continue;
    }
    if (mark.action === 'undo' && mark.step === 'freeze') abandoned++;
    if (mark.action === 'done' || mark.action === 'failed' || mark.action === 'undo') {
      // A whole-move undo or failure ('online') ends every step of the slot still open.
      const keys = mark.step === WHOLE_MOVE_STEP ? [...open.keys()].filter((candidate) => candidate.startsWith(`${mark.slot}/`)) : open.has(key) ? [key] : [];
      for (const ended of keys) {
        intervals.push({ step: ended.slice(ended.indexOf('/') + 1), slot: mark.slot, fromMs: open.get(ended)!, toMs: mark.atMs });
        open.delete(ended);
      }
    }
  }
  return { intervals, abandoned };
}

function unionMs(intervals: readonly { fromMs: number; toMs: number }[]): number {
  const sorted = [...intervals].sort((a, b) => a.fromMs - b.fromMs);
  let total = 0;
  let end = -Infinity;
  for (const { fromMs, toMs } of sorted) {
    if (toMs <= end) continue;
    total += toMs - Math.max(fromMs, end);
    end = toMs;
  }
  return total;
}

const seconds = (ms: number): number => Math.round(ms) / 1000;

/**
 * `marks` in journal order; `copyEndMsBySlot` from the coordinator's events;
 * `rebalanceFromMs`/`rebalanceToMs` bound the run (the same clock as the
 * journal's timestamps: one machine).
 */
export function rebalancePhases(marks: readonly JournalMark[], copyEndMsBySlot: ReadonlyMap<number, number>, rebalanceFromMs: number, rebalanceToMs: number): PhaseBreakdown {
  const { intervals: steps, abandoned } = stepIntervals(marks);
  const intervals: Interval[] = [];
  for (const step of steps) {
    const phase = PHASE_OF_STEP[step.step] ?? step.step;
    const copyEndMs = copyEndMsBySlot.get(step.slot);
    if (phase === 'copy' && copyEndMs !== undefined && copyEndMs > step.fromMs && copyEndMs < step.toMs) {
      intervals.push({ phase: 'copy', slot: step.slot, fromMs: step.fromMs, toMs: copyEndMs });
      intervals.push({ phase: 'catch_up', slot: step.slot, fromMs: copyEndMs, toMs: step.toMs });
    } else {
      intervals.push({ phase, slot: step.slot, fromMs: step.fromMs, toMs: step.toMs });
    }
  }
  // The waits of each move: between its stream's end and its first freeze, and its switch and its cleanup.
  const bySlot = new Map<number, Interval[]>();
  for (const interval of intervals) bySlot.set(interval.slot, [...(bySlot.get(interval.slot) ?? []), interval]);
  for (const [slot, own] of bySlot) {
    const lastEnd = (phase: string): number | undefined => {
      const ends = own.filter((interval) => interval.phase === phase).map((interval) => interval.toMs);
      return ends.length ? Math.max(...ends) : undefined;
    };
    const firstBegin = (phase: string): number | undefined => {
      const begins = own.filter((interval) => interval.phase === phase).map((interval) => interval.fromMs);
      return begins.length ? Math.min(...begins) : undefined;
    };
    const streamed = lastEnd('catch_up') ?? lastEnd('copy');
    const frozen = firstBegin('cutover');
    if (streamed !== undefined && frozen !== undefined && frozen > streamed) intervals.push({ phase: 'wait_before_cutover', slot, fromMs: streamed, toMs: frozen });
    const switched = lastEnd('cutover');
    const cleaning = firstBegin('cleanup');
    if (switched !== undefined && cleaning !== undefined && cleaning > switched) intervals.push({ phase: 'wait_before_cleanup', slot, fromMs: switched, toMs: cleaning });
  }

  const phases: Record<string, PhaseSeconds> = {};
  const names = [...PHASE_ORDER, ...new Set(intervals.map((interval) => interval.phase).filter((phase) => !PHASE_ORDER.includes(phase)))];
  for (const phase of names) {
    const own = intervals.filter((interval) => interval.phase === phase);
    if (own.length === 0) continue;
    const fromMs = Math.min(...own.map((interval) => interval.fromMs));
    const toMs = Math.max(...own.map((interval) => interval.toMs));
    phases[phase] = {
      wall_seconds: seconds(toMs - fromMs),
      summed_seconds: seconds(own.reduce((sum, interval) => sum + interval.toMs - interval.fromMs, 0)),
      union_seconds: seconds(unionMs(own)),
      from_s: seconds(fromMs - rebalanceFromMs),
      to_s: seconds(toMs - rebalanceFromMs),
      moves: new Set(own.map((interval) => interval.slot)).size,
    };
  }
  const working = unionMs(steps.map((step) => ({ fromMs: Math.max(step.fromMs, rebalanceFromMs), toMs: Math.min(step.toMs, rebalanceToMs) })).filter((step) => step.toMs > step.fromMs));
  return {
    phases,
    cutover_attempts_abandoned: abandoned,
    seconds_with_no_step_running: seconds(Math.max(0, rebalanceToMs - rebalanceFromMs - working)),
  };
}
