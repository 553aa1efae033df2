import type { Queryable } from '../plumbing/queryable.js';

/** `pause` and `resume` also mark a window's edges: its migration paused at a window's end, resumed in the next. */
export type AutopilotDecisionKind = 'evaluate' | 'start' | 'resume' | 'pause' | 'finish' | 'wait';

export interface AutopilotDecision {
  id: number;
  at: Date;
  holder: string;
  kind: AutopilotDecisionKind;
  acted: boolean;
  migrationId: number | undefined;
  summary: string;
  details: Record<string, unknown>;
}

/** Decisions are kept this long; older ones are pruned as new ones are written. */
export const AUTOPILOT_DECISION_RETENTION_DAYS = 30;

export async function recordAutopilotDecision(
  db: Queryable,
  decision: { holder: string; kind: AutopilotDecisionKind; acted: boolean; migrationId?: number; summary: string; details: Record<string, unknown> },
): Promise<void> {
  await db.query(
    `WITH pruned AS (DELETE FROM reshard.autopilot_decision WHERE at < now() - $7 * interval '1 day')
     INSERT INTO reshard.autopilot_decision (holder, kind, acted, migration_id, summary, details) VALUES ($1, $2, $3, $4, $5, $6)`,
    [decision.holder, decision.kind, decision.acted, decision.migrationId ?? null, decision.summary, JSON.stringify(decision.details), AUTOPILOT_DECISION_RETENTION_DAYS],
  );
}

export async function listAutopilotDecisions(db: Queryable, limit = 50): Promise<AutopilotDecision[]> {
  const result = await db.query<{ id: string; at: Date; holder: string; kind: AutopilotDecisionKind; acted: boolean; migration_id: string | null; summary: string; details: Record<string, unknown> }>(
    'SELECT id::text, at, holder, kind, acted, migration_id::text, summary, details FROM reshard.autopilot_decision ORDER BY id DESC LIMIT $1',
    [limit],
  );
  return result.rows.map((row) => ({
    id: Number(row.id), at: row.at, holder: row.holder, kind: row.kind, acted: row.acted,
    migrationId: row.migration_id === null ? undefined : Number(row.migration_id), summary: row.summary, details: row.details,
  }));
}

/** What the autopilot writes into the plans it records, so that its migrations are known as its own from the moment they exist. */
export const AUTOPILOT_PLAN_ORIGIN = 'autopilot';

/** True when the autopilot started migration `id` (it resumes only its own). */
export async function isAutopilotMigration(db: Queryable, id: number): Promise<boolean> {
  const result = await db.query<{ own: boolean }>('SELECT coalesce((SELECT plan->>\'origin\' = $2 FROM reshard.migration WHERE id = $1), false) AS own', [id, AUTOPILOT_PLAN_ORIGIN]);
  return result.rows[0]?.own ?? false;
}

/** Slots the autopilot moved (in migrations it started) since `sinceMs` ago: they are cooling down. */
export async function slotsMovedByAutopilotWithin(db: Queryable, sinceMs: number): Promise<number[]> {
  const result = await db.query<{ slot: number }>(
    `SELECT DISTINCT mv.slot FROM reshard.move mv JOIN reshard.migration m ON m.id = mv.migration_id
      WHERE m.plan->>'origin' = $2
        AND (m.created_at >= now() - $1 * interval '1 millisecond' OR mv.finished_at >= now() - $1 * interval '1 millisecond' OR mv.finished_at IS NULL)
      ORDER BY mv.slot`,
    [sinceMs, AUTOPILOT_PLAN_ORIGIN],
  );
  return result.rows.map((row) => row.slot);
}
