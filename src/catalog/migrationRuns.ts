import type pg from 'pg';
import { ReshardError } from '../core/errors.js';
import type { MoveStepName } from '../core/moveStepNames.js';
import type { Queryable } from '../plumbing/queryable.js';
import { MIGRATION_FAILED_STEP } from './migrationFailures.js';

export type MigrationState = 'running' | 'completed' | 'failed' | 'cancelled' | 'rolled_back';
export type MoverMode = 'offline' | 'online';
export type MoveState = 'pending' | 'running' | 'done' | 'failed' | 'rolled_back';

export interface MigrationRecord {
  id: number;
  state: MigrationState;
  mode: MoverMode;
  baseEpoch: number;
  bytesTotal: number;
  createdAt: Date;
  finishedAt: Date | undefined;
  error: string | undefined;
}

export interface MoveRecord {
  migrationId: number;
  slot: number;
  source: string;
  target: string;
  /** What the move does: a move of a slot, or a split or merge (a split --to's target is its high child's node). Read from the catalog. */
  kind?: 'move' | 'split' | 'merge';
  wave: number;
  bytesTotal: number;
  bytesCopied: number;
  rowsCopied: number;
  state: MoveState;
  step: MoveStepName | undefined;
  startedAt: Date | undefined;
  finishedAt: Date | undefined;
  pauseMs: number | undefined;
  error: string | undefined;
}

export interface NewMove {
  slot: number;
  source: string;
  target: string;
  wave: number;
  bytesTotal: number;
}

/**
 * The liveness of a coordinator is a session advisory lock keyed by the
 * migration id: a 'running' migration nobody holds was interrupted.
 */
export const COORDINATOR_LOCK_CLASS = 0x7273_6d67; // "rsmg"

/**
 * Runs `record` (a new migration's rows) in one transaction that claims the
 * single running-migration place: a second running migration breaks the
 * unique index and is refused with the one that runs named.
 */
export async function claimRunningPlace<T>(client: pg.ClientBase, record: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const recorded = await record();
    await client.query('COMMIT');
    return recorded;
  } catch (error) {
    await client.query('ROLLBACK');
    if ((error as { code?: string }).code === '23505') {
      const running = await runningMigration(client);
      throw migrationAlreadyRunningError(running?.id, await migrationIsHeld(client, running?.id));
    }
    throw error;
  }
}

/** Claims the single running-migration place and records its moves. */
export async function createMigration(
  client: pg.ClientBase,
  migration: { mode: MoverMode; baseEpoch: number; plan: unknown; moves: readonly NewMove[] },
): Promise<number> {
  return claimRunningPlace(client, async () => {
    const bytesTotal = migration.moves.reduce((sum, move) => sum + move.bytesTotal, 0);
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO reshard.migration (state, mode, base_epoch, plan, bytes_total)
       VALUES ('running', $1, $2, $3, $4) RETURNING id::text`,
      [migration.mode, migration.baseEpoch, JSON.stringify(migration.plan), bytesTotal],
    );
    const id = Number(inserted.rows[0]!.id);
    await client.query(
      `INSERT INTO reshard.move (migration_id, slot, source, target, wave, bytes_total)
       SELECT $1, slot, source, target, wave, bytes
         FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::bigint[]) AS m(slot, source, target, wave, bytes)`,
      [id, migration.moves.map((m) => m.slot), migration.moves.map((m) => m.source), migration.moves.map((m) => m.target),
        migration.moves.map((m) => m.wave), migration.moves.map((m) => m.bytesTotal)],
    );
    return id;
  });
}

export function migrationAlreadyRunningError(id: number | undefined, held: boolean): ReshardError {
  return held
    ? new ReshardError('conflict', `migration ${id} is already running`, 'wait for it to finish (`reshard status`); only one migration runs at a time')
    : new ReshardError('conflict', `migration ${id} was interrupted and is not finished`, `run \`reshard resume\` to finish it, or \`reshard rollback\` to undo it`);
}

/** True when some coordinator session holds the migration's liveness lock. */
export async function migrationIsHeld(db: Queryable, id: number | undefined): Promise<boolean> {
  if (id === undefined) return false;
  const result = await db.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid AND granted) AS held`,
    [COORDINATOR_LOCK_CLASS, id],
  );
  return result.rows[0]?.held ?? false;
}

/** Takes the liveness lock on a dedicated session; false if another coordinator has it. */
export async function holdMigration(client: pg.ClientBase, id: number): Promise<boolean> {
  const result = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS locked', [COORDINATOR_LOCK_CLASS, id]);
  return result.rows[0]?.locked ?? false;
}

interface MigrationRow {
  id: string;
  state: MigrationState;
  mode: MoverMode;
  base_epoch: string;
  bytes_total: string;
  created_at: Date;
  finished_at: Date | null;
  error: string | null;
}

const MIGRATION_COLUMNS = 'id::text, state, mode, base_epoch::text, bytes_total::text, created_at, finished_at, error';

function migrationFromRow(row: MigrationRow): MigrationRecord {
  return {
    id: Number(row.id),
    state: row.state,
    mode: row.mode,
    baseEpoch: Number(row.base_epoch),
    bytesTotal: Number(row.bytes_total),
    createdAt: row.created_at,
    finishedAt: row.finished_at ?? undefined,
    error: row.error ?? undefined,
  };
}

export async function runningMigration(db: Queryable): Promise<MigrationRecord | undefined> {
  const result = await db.query<MigrationRow>(`SELECT ${MIGRATION_COLUMNS} FROM reshard.migration WHERE state = 'running'`);
  return result.rows[0] ? migrationFromRow(result.rows[0]) : undefined;
}

/** The migration `resume` continues: the running one (interrupted), else the latest if it failed. */
export async function resumableMigration(db: Queryable): Promise<MigrationRecord | undefined> {
  const running = await runningMigration(db);
  if (running) return running;
  const latest = (await listMigrations(db, 1))[0];
  return latest?.state === 'failed' ? latest : undefined;
}

/** Puts a failed migration back to running (claiming the single running place). */
export async function reopenMigration(db: Queryable, id: number): Promise<void> {
  try {
    await db.query("UPDATE reshard.migration SET state = 'running', finished_at = NULL, error = NULL WHERE id = $1 AND state = 'failed'", [id]);
  } catch (error) {
    if ((error as { code?: string }).code === '23505') throw migrationAlreadyRunningError((await runningMigration(db))?.id, true);
    throw error;
  }
}

/**
 * A migration whose objects on the nodes are still needed: running (or
 * interrupted), failed with moves `resume` will finish, or held by a
 * coordinator (a rollback holds the migration it takes back).
 */
export interface MigrationInFlight {
  id: number;
  state: MigrationState;
  /** Every slot it moves, finished or not: their leaves, fences and replication objects are its own. */
  slots: number[];
}

export async function migrationsInFlight(db: Queryable): Promise<MigrationInFlight[]> {
  const result = await db.query<{ id: string; state: MigrationState; slots: number[] }>(
    `SELECT m.id::text, m.state, coalesce(array_agg(mv.slot ORDER BY mv.slot) FILTER (WHERE mv.slot IS NOT NULL), '{}') AS slots
       FROM reshard.migration m LEFT JOIN reshard.move mv ON mv.migration_id = m.id
      WHERE m.state = 'running'
         OR (m.state = 'failed' AND m.id = (SELECT max(id) FROM reshard.migration)
             AND EXISTS (SELECT 1 FROM reshard.move f WHERE f.migration_id = m.id AND f.state = 'failed'))
         OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = m.id::oid AND l.granted)
      GROUP BY m.id, m.state ORDER BY m.id`,
    [COORDINATOR_LOCK_CLASS],
  );
  return result.rows.map((row) => ({ id: Number(row.id), state: row.state, slots: row.slots }));
}

/** Moves a failed migration left half-done (past their switch, or with an undo that could not finish). */
export async function unfinishedMoves(db: Queryable, id: number): Promise<number> {
  const result = await db.query<{ count: string }>("SELECT count(*)::text FROM reshard.move WHERE migration_id = $1 AND state = 'failed'", [id]);
  return Number(result.rows[0]?.count ?? 0);
}

export async function listMigrations(db: Queryable, limit = 20): Promise<MigrationRecord[]> {
  const result = await db.query<MigrationRow>(`SELECT ${MIGRATION_COLUMNS} FROM reshard.migration ORDER BY reshard.migration.id DESC LIMIT $1`, [limit]);
  return result.rows.map(migrationFromRow);
}

export async function getMigration(db: Queryable, id: number): Promise<MigrationRecord> {
  const result = await db.query<MigrationRow>(`SELECT ${MIGRATION_COLUMNS} FROM reshard.migration WHERE id = $1`, [id]);
  if (!result.rows[0]) throw new ReshardError('not_found', `no migration with id ${id}`, 'list migrations with `reshard status`');
  return migrationFromRow(result.rows[0]);
}

/** Ends a migration; a failure is journaled too, so that it stays in the history after `resume` clears `error`. */
export async function finishMigration(db: Queryable, id: number, state: Exclude<MigrationState, 'running'>, error?: string): Promise<void> {
  await db.query(
    `WITH finished AS (UPDATE reshard.migration SET state = $2, finished_at = now(), error = $3 WHERE id = $1 RETURNING id)
     INSERT INTO reshard.journal (migration_id, step, action, detail)
     SELECT id, '${MIGRATION_FAILED_STEP}', 'failed', jsonb_build_object('error', $3::text) FROM finished WHERE $2::text = 'failed'`,
    [id, state, error ?? null],
  );
}

interface MoveRow {
  migration_id: string;
  slot: number;
  source: string;
  target: string;
  kind: 'move' | 'split' | 'merge';
  wave: number;
  bytes_total: string;
  bytes_copied: string;
  rows_copied: string;
  state: MoveState;
  step: MoveStepName | null;
  started_at: Date | null;
  finished_at: Date | null;
  pause_ms: number | null;
  error: string | null;
}

export async function listMoves(db: Queryable, migrationId: number): Promise<MoveRecord[]> {
  const result = await db.query<MoveRow>(
    `SELECT migration_id::text, slot, source, target, kind, wave, bytes_total::text, bytes_copied::text, rows_copied::text,
            state, step, started_at, finished_at, pause_ms, error
       FROM reshard.move WHERE migration_id = $1 ORDER BY wave, slot`,
    [migrationId],
  );
  return result.rows.map((row) => ({
    migrationId: Number(row.migration_id),
    slot: row.slot,
    source: row.source,
    target: row.target,
    kind: row.kind,
    wave: row.wave,
    bytesTotal: Number(row.bytes_total),
    bytesCopied: Number(row.bytes_copied),
    rowsCopied: Number(row.rows_copied),
    state: row.state,
    step: row.step ?? undefined,
    startedAt: row.started_at ?? undefined,
    finishedAt: row.finished_at ?? undefined,
    pauseMs: row.pause_ms ?? undefined,
    error: row.error ?? undefined,
  }));
}

export async function updateMove(
  db: Queryable,
  migrationId: number,
  slot: number,
  change: MoveChange,
): Promise<void> {
  await updateMoves(db, migrationId, [slot], change);
}

export type MoveChange = Partial<{ state: MoveState; step: MoveStepName; bytesCopied: number; rowsCopied: number; pauseMs: number; error: string | null }>;

/** Moves whose copy is complete: each one's bytes copied is its slot's size. */
export async function markMovesCopied(db: Queryable, migrationId: number, slots: readonly number[]): Promise<void> {
  await db.query('UPDATE reshard.move SET bytes_copied = bytes_total WHERE migration_id = $1 AND slot = ANY ($2::int[])', [migrationId, slots]);
}

/** The same change to several moves of a migration, in one statement (one commit: all or none). */
export async function updateMoves(db: Queryable, migrationId: number, slots: readonly number[], change: MoveChange): Promise<void> {
  if (slots.length === 0) return;
  await db.query(
    `UPDATE reshard.move SET
        state = coalesce($3, state),
        step = coalesce($4, step),
        bytes_copied = coalesce($5, bytes_copied),
        rows_copied = coalesce($6, rows_copied),
        pause_ms = coalesce($7, pause_ms),
        error = CASE WHEN $8::boolean THEN $9 ELSE error END,
        started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
        finished_at = CASE WHEN $3 IN ('done', 'failed', 'rolled_back') THEN now() ELSE finished_at END
      WHERE migration_id = $1 AND slot = ANY ($2::int[])`,
    [migrationId, slots, change.state ?? null, change.step ?? null, change.bytesCopied ?? null, change.rowsCopied ?? null,
      change.pauseMs ?? null, change.error !== undefined, change.error ?? null],
  );
}
