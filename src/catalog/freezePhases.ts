import { percentile } from '../core/percentile.js';
import type { Queryable } from '../plumbing/queryable.js';

/**
 * The phases of a freeze, in the order they happen: routers acknowledged,
 * source fenced, target replayed past the fence, checksums verified, leaves
 * attached (an adoption's and a split's; an online move attaches before its
 * freeze), owner switched. The switch step journals when
 * each one ended (ms since the freeze began, `pausePhasesMs`).
 */
export const FREEZE_PHASES = ['acked', 'fenced', 'replayed', 'verified', 'attached', 'switched'] as const;
export type FreezePhase = (typeof FREEZE_PHASES)[number];

/** How long each phase of one freeze took, ms (a phase missing from the journal is absent). */
export type FreezePhasesMs = Partial<Record<FreezePhase, number>>;

/** Phase durations from the journaled marks (ms since the freeze began) (pure). */
export function phaseDurationsMs(marks: Readonly<Record<string, number>>): FreezePhasesMs {
  const durations: FreezePhasesMs = {};
  // From the end of the last phase this freeze had: an online move attaches before its freeze (no 'attached').
  let previous = 0;
  for (const phase of FREEZE_PHASES) {
    const end = marks[phase];
    if (typeof end !== 'number') continue;
    durations[phase] = end - previous;
    previous = end;
  }
  return durations;
}

/** Per switched slot of the migration, its last freeze's phases (the one that switched). */
export async function readFreezePhases(db: Queryable, migrationId: number): Promise<Map<number, FreezePhasesMs>> {
  const result = await db.query<{ slot: number; marks: Record<string, number> }>(
    `SELECT DISTINCT ON (j.slot) j.slot, j.detail->'pausePhasesMs' AS marks FROM reshard.journal j
      WHERE j.migration_id = $1 AND j.step = 'switch' AND j.action = 'done' AND j.detail ? 'pausePhasesMs'
      ORDER BY j.slot, j.id DESC`,
    [migrationId],
  );
  return new Map(result.rows.map((row) => [row.slot, phaseDurationsMs(row.marks)]));
}

/** Sequential round trips of one freeze (every session's, the journal's too): in all, and per phase. */
export interface FreezeRoundTrips {
  total: number;
  byPhase: Partial<Record<FreezePhase, number>>;
}

/** Per switched slot of the migration, its last freeze's round trips (journaled since the count was; older moves are absent). */
export async function readFreezeRoundTrips(db: Queryable, migrationId: number): Promise<Map<number, FreezeRoundTrips>> {
  const result = await db.query<{ slot: number; marks: Record<string, number> }>(
    `SELECT DISTINCT ON (j.slot) j.slot, j.detail->'pauseRoundTrips' AS marks FROM reshard.journal j
      WHERE j.migration_id = $1 AND j.step = 'switch' AND j.action = 'done' AND j.detail ? 'pauseRoundTrips'
      ORDER BY j.slot, j.id DESC`,
    [migrationId],
  );
  return new Map(result.rows.map((row) => [row.slot, freezeRoundTrips(row.marks)]));
}

/** Round trips per phase from the journaled counts at each phase's end (pure; the counts only grow, like the ms marks). */
export function freezeRoundTrips(marks: Readonly<Record<string, number>>): FreezeRoundTrips {
  const ends = FREEZE_PHASES.flatMap((phase) => (typeof marks[phase] === 'number' ? [marks[phase]!] : []));
  return { total: ends.length ? Math.max(...ends) : 0, byPhase: phaseDurationsMs(marks) };
}

/** Round trips per freeze and per phase, p50 and max over the moves (pure). */
export function summarizeFreezeRoundTrips(perMove: Iterable<FreezeRoundTrips>): { total?: { p50: number; max: number }; byPhase: Partial<Record<FreezePhase, { p50: number; max: number }>> } {
  const moves = [...perMove];
  const totals = moves.map((move) => move.total);
  return {
    ...(totals.length ? { total: { p50: percentile(totals, 0.5), max: Math.max(...totals) } } : {}),
    byPhase: summarizeFreezePhases(moves.map((move) => move.byPhase)),
  };
}

/** Each phase's p50 and max over the moves (pure): where a migration's write pauses went. */
export function summarizeFreezePhases(perMove: Iterable<FreezePhasesMs>): Partial<Record<FreezePhase, { p50: number; max: number }>> {
  const moves = [...perMove];
  const summary: Partial<Record<FreezePhase, { p50: number; max: number }>> = {};
  for (const phase of FREEZE_PHASES) {
    const durations = moves.flatMap((move) => (move[phase] === undefined ? [] : [move[phase]!]));
    if (durations.length) summary[phase] = { p50: percentile(durations, 0.5), max: Math.max(...durations) };
  }
  return summary;
}
