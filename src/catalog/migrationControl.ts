import type { Queryable } from '../plumbing/queryable.js';

/**
 * What an operator asked of a running migration. The coordinator reads it
 * between units of work (a batch's stream, a cutover, the cleanups, an
 * offline move), so a request from any process steers it.
 */
export type MigrationControl = 'run' | 'pause' | 'cancel';

export interface ControlChange {
  migrationId: number;
  /** The control after the request. */
  control: MigrationControl;
  /** False when the migration already was in that state (requests are idempotent). */
  changed: boolean;
}

/** Asks the coordinator to hold before its next unit of work. A cancel already asked for wins. */
export async function requestPause(db: Queryable, migrationId: number): Promise<ControlChange> {
  return changeControl(db, migrationId,
    `UPDATE reshard.migration SET control = 'pause', control_at = now()
      WHERE id = $1 AND state = 'running' AND control IS NULL RETURNING id`);
}

/** Lets a paused migration go on. Leaves a cancel in place: a cancel is not undone by a resume. */
export async function requestResume(db: Queryable, migrationId: number): Promise<ControlChange> {
  return changeControl(db, migrationId,
    `UPDATE reshard.migration SET control = NULL, control_at = now()
      WHERE id = $1 AND state = 'running' AND control = 'pause' RETURNING id`);
}

/** Asks the coordinator to start no new work and roll back the moves that have not switched. */
export async function requestCancel(db: Queryable, migrationId: number): Promise<ControlChange> {
  return changeControl(db, migrationId,
    `UPDATE reshard.migration SET control = 'cancel', control_at = now()
      WHERE id = $1 AND state = 'running' AND control IS DISTINCT FROM 'cancel' RETURNING id`);
}

export async function readControl(db: Queryable, migrationId: number): Promise<MigrationControl> {
  const result = await db.query<{ control: 'pause' | 'cancel' | null }>('SELECT control FROM reshard.migration WHERE id = $1', [migrationId]);
  return result.rows[0]?.control ?? 'run';
}

async function changeControl(db: Queryable, migrationId: number, update: string): Promise<ControlChange> {
  const changed = (await db.query(update, [migrationId])).rowCount === 1;
  return { migrationId, control: await readControl(db, migrationId), changed };
}
