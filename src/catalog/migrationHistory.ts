import type { Queryable } from '../plumbing/queryable.js';
import { failuresFromJson, MIGRATION_FAILURES_JSON, type MigrationFailure } from './migrationFailures.js';
import type { MigrationState, MoverMode } from './migrationRuns.js';

/** One past (or the running) migration with what it moved and the write pauses its slots saw. */
export interface MigrationHistoryEntry {
  id: number;
  state: MigrationState;
  mode: MoverMode;
  createdAt: Date;
  finishedAt: Date | undefined;
  seconds: number;
  moves: number;
  slotsMoved: number;
  bytesMoved: number;
  bytesTotal: number;
  /** Per-slot write pause (freeze → switch) of the moves that switched; undefined when none recorded one. */
  pauseMsP50: number | undefined;
  pauseMsP99: number | undefined;
  pauseMsMax: number | undefined;
  error: string | undefined;
  /** Every time it stopped failed, oldest first: a resumed migration's earlier failures stay here after `error` is cleared. */
  failures: MigrationFailure[];
}

/** The latest migrations, newest first, aggregated over their moves in one query. */
export async function listMigrationHistory(db: Queryable, limit = 20): Promise<MigrationHistoryEntry[]> {
  const result = await db.query<{
    id: string; state: MigrationState; mode: MoverMode; created_at: Date; finished_at: Date | null; seconds: number;
    moves: string; slots_moved: string; bytes_moved: string; bytes_total: string;
    pause_ms_p50: number | null; pause_ms_p99: number | null; pause_ms_max: number | null; error: string | null;
    failures: { at: string; error: string | null }[];
  }>(
    `SELECT m.id::text, m.state, m.mode, m.created_at, m.finished_at,
            extract(epoch FROM coalesce(m.finished_at, now()) - m.created_at)::float8 AS seconds,
            count(mv.slot)::text AS moves,
            count(mv.slot) FILTER (WHERE mv.state = 'done')::text AS slots_moved,
            coalesce(sum(mv.bytes_copied) FILTER (WHERE mv.state = 'done'), 0)::text AS bytes_moved,
            m.bytes_total::text,
            percentile_disc(0.5) WITHIN GROUP (ORDER BY mv.pause_ms) FILTER (WHERE mv.state = 'done') AS pause_ms_p50,
            percentile_disc(0.99) WITHIN GROUP (ORDER BY mv.pause_ms) FILTER (WHERE mv.state = 'done') AS pause_ms_p99,
            max(mv.pause_ms) FILTER (WHERE mv.state = 'done') AS pause_ms_max,
            m.error,
            ${MIGRATION_FAILURES_JSON} AS failures
       FROM (SELECT * FROM reshard.migration ORDER BY id DESC LIMIT $1) m
       LEFT JOIN reshard.move mv ON mv.migration_id = m.id
      GROUP BY m.id, m.state, m.mode, m.created_at, m.finished_at, m.bytes_total, m.error
      ORDER BY m.id DESC`,
    [limit],
  );
  return result.rows.map((row) => ({
    id: Number(row.id),
    state: row.state,
    mode: row.mode,
    createdAt: row.created_at,
    finishedAt: row.finished_at ?? undefined,
    seconds: row.seconds,
    moves: Number(row.moves),
    slotsMoved: Number(row.slots_moved),
    bytesMoved: Number(row.bytes_moved),
    bytesTotal: Number(row.bytes_total),
    pauseMsP50: row.pause_ms_p50 ?? undefined,
    pauseMsP99: row.pause_ms_p99 ?? undefined,
    pauseMsMax: row.pause_ms_max ?? undefined,
    error: row.error ?? undefined,
    failures: failuresFromJson(row.failures),
  }));
}
