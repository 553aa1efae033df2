import type { Queryable } from '../plumbing/queryable.js';

/** One router's traffic on one slot over one reporting period. */
export interface SlotLoadSample {
  slot: number;
  calls: number;
  rowsWritten: number;
  p50Ms: number;
  p99Ms: number;
}

/** How long reported samples are kept; older ones are pruned by the routers' own reports. */
export const SLOT_LOAD_RETENTION_MS_DEFAULT = 3_600_000;

/**
 * Records one router's period (only slots with calls) and prunes samples older
 * than the retention, in one statement: one round trip per router per period.
 */
export async function recordSlotLoad(
  db: Queryable,
  report: { routerId: string; periodStart: Date; periodMs: number; samples: readonly SlotLoadSample[]; retentionMs: number },
): Promise<void> {
  const { samples } = report;
  await db.query(
    // Pruning skips rows another router is pruning at the same moment: a report never waits on a lock
    // (it shares the router's catalog session with the acknowledgements a freeze waits for).
    `WITH pruned AS (DELETE FROM reshard.slot_load WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM reshard.slot_load WHERE period_start < now() - $9 * interval '1 millisecond' LIMIT 10000 FOR UPDATE SKIP LOCKED)))
     INSERT INTO reshard.slot_load (router_id, slot, period_start, period_ms, calls, rows_written, p50_ms, p99_ms)
     SELECT $1, s.slot, $2, $3, s.calls, s.rows_written, s.p50_ms, s.p99_ms
       FROM unnest($4::int[], $5::bigint[], $6::bigint[], $7::real[], $8::real[]) AS s(slot, calls, rows_written, p50_ms, p99_ms)
     ON CONFLICT (router_id, slot, period_start) DO UPDATE
        SET calls = excluded.calls, rows_written = excluded.rows_written, p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms`,
    [report.routerId, report.periodStart, Math.max(1, Math.round(report.periodMs)),
      samples.map((s) => s.slot), samples.map((s) => s.calls), samples.map((s) => s.rowsWritten),
      samples.map((s) => s.p50Ms), samples.map((s) => s.p99Ms), report.retentionMs],
  );
}

/** A slot's traffic over a window, summed over routers, per bucket of the window. */
export interface SlotLoadInBucket {
  /** 0 = the latest bucket, 1 the one before, … */
  bucket: number;
  slot: number;
  calls: number;
  rowsWritten: number;
  /** Mean of the routers' medians, weighted by their calls. */
  p50Ms: number;
  /** The highest p99 any router saw. */
  p99Ms: number;
}

/**
 * Router samples of the last `buckets` × `bucketMs` (ending now), grouped by
 * slot and bucket (by each sample's period start), and how many routers
 * reported in that time.
 */
export async function readSlotLoad(db: Queryable, window: { bucketMs: number; buckets: number }): Promise<{ rows: SlotLoadInBucket[]; routers: number }> {
  const result = await db.query<{ bucket: number; slot: number; calls: string; rows_written: string; p50_ms: number; p99_ms: number; routers: string }>(
    `WITH recent AS (
       SELECT l.*, floor(extract(epoch FROM (now() - l.period_start)) * 1000 / $1)::int AS bucket
         FROM reshard.slot_load l
        WHERE l.period_start >= now() - $1 * $2 * interval '1 millisecond')
     SELECT bucket, slot, sum(calls)::text AS calls, sum(rows_written)::text AS rows_written,
            coalesce(sum(p50_ms * calls) / nullif(sum(calls), 0), 0)::float8 AS p50_ms, max(p99_ms)::float8 AS p99_ms,
            (SELECT count(DISTINCT router_id) FROM recent)::text AS routers
       FROM recent WHERE bucket < $2
      GROUP BY bucket, slot ORDER BY bucket, slot`,
    [window.bucketMs, window.buckets],
  );
  return {
    rows: result.rows.map((row) => ({ bucket: row.bucket, slot: row.slot, calls: Number(row.calls), rowsWritten: Number(row.rows_written), p50Ms: row.p50_ms, p99Ms: row.p99_ms })),
    routers: Number(result.rows[0]?.routers ?? 0),
  };
}

/**
 * What the application feels on the slots that are not moving: the routers'
 * p99 per slot (the highest any router saw), averaged over those slots
 * weighted by their calls, over `windowMs` ending now. Undefined without calls.
 */
export async function readOtherSlotsP99(db: Queryable, window: { windowMs: number; excludedSlots: readonly number[] }): Promise<{ p99Ms: number; calls: number } | undefined> {
  const result = await db.query<{ p99_ms: number | null; calls: string }>(
    `WITH per_slot AS (
       SELECT slot, max(p99_ms) AS p99_ms, sum(calls) AS calls FROM reshard.slot_load
        WHERE period_start >= now() - $1 * interval '1 millisecond' AND slot <> ALL ($2::int[])
        GROUP BY slot)
     SELECT (sum(p99_ms * calls) / nullif(sum(calls), 0))::float8 AS p99_ms, coalesce(sum(calls), 0)::text AS calls FROM per_slot`,
    [window.windowMs, window.excludedSlots],
  );
  const row = result.rows[0];
  return row?.p99_ms == null ? undefined : { p99Ms: row.p99_ms, calls: Number(row.calls) };
}
