import { LATENCY_BUCKETS, latencyBucket } from '../core/latencyHistogram.js';
import type { Queryable } from '../plumbing/queryable.js';

/** One router's traffic on one slot over one reporting period. */
export interface SlotLoadSample {
  slot: number;
  calls: number;
  rowsWritten: number;
  p50Ms: number;
  p99Ms: number;
  /** The period's latency histogram: its non-empty buckets (src/core/latencyHistogram.ts) and their calls. */
  latency?: { buckets: number[]; counts: number[] };
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
     INSERT INTO reshard.slot_load (router_id, slot, period_start, period_ms, calls, rows_written, p50_ms, p99_ms, latency_buckets, latency_counts)
     SELECT $1, s.slot, $2, $3, s.calls, s.rows_written, s.p50_ms, s.p99_ms, s.buckets::smallint[], s.counts::int[]
       FROM unnest($4::int[], $5::bigint[], $6::bigint[], $7::real[], $8::real[], $10::text[], $11::text[]) AS s(slot, calls, rows_written, p50_ms, p99_ms, buckets, counts)
     ON CONFLICT (router_id, slot, period_start) DO UPDATE
        SET calls = excluded.calls, rows_written = excluded.rows_written, p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms,
            latency_buckets = excluded.latency_buckets, latency_counts = excluded.latency_counts`,
    [report.routerId, report.periodStart, Math.max(1, Math.round(report.periodMs)),
      samples.map((s) => s.slot), samples.map((s) => s.calls), samples.map((s) => s.rowsWritten),
      samples.map((s) => s.p50Ms), samples.map((s) => s.p99Ms), report.retentionMs,
      // One array literal per sample ('{3,4,9}'): unnest cannot take an array of arrays of different lengths.
      samples.map((s) => (s.latency ? `{${s.latency.buckets.join(',')}}` : null)), samples.map((s) => (s.latency ? `{${s.latency.counts.join(',')}}` : null))],
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

/** No upper end to a window: a day ahead of now. */
const NO_END_MS = -86_400_000;

/** The calls of a set of slots over a window, as one histogram (src/core/latencyHistogram.ts). */
export interface LatencyInWindow {
  /** Calls per bucket, summed over slots, routers and periods. */
  counts: number[];
  calls: number;
  /** The longest reporting period among the samples: how stale the newest number can be. */
  reportPeriodMsMax: number;
}

/**
 * What the application feels on the slots that are not moving: every router
 * sample of the other slots whose period started within `windowMs` (and, with
 * `endsAgoMs`, at least that long ago: a guard that adds up periods as they
 * settle reads each once), their latency histograms added up (the p99 of that is the p99 of all those calls,
 * as the clients saw them). Samples without a histogram (routers older than
 * schema version 11) count their calls at their own p99, a pessimistic stand-in.
 * Undefined without calls.
 */
export async function readOtherSlotsLatency(db: Queryable, window: { windowMs: number; excludedSlots: readonly number[]; endsAgoMs?: number }): Promise<LatencyInWindow | undefined> {
  const result = await db.query<{ bucket: number | null; calls: string; period_ms_max: number }>(
    `WITH recent AS (
       SELECT * FROM reshard.slot_load
        WHERE period_start >= now() - $1 * interval '1 millisecond' AND period_start < now() - $3 * interval '1 millisecond' AND slot <> ALL ($2::int[]))
     SELECT h.bucket, sum(h.calls)::text AS calls, (SELECT max(period_ms) FROM recent) AS period_ms_max
       FROM recent r
       CROSS JOIN LATERAL (
         SELECT b::int AS bucket, c::bigint AS calls FROM unnest(r.latency_buckets, r.latency_counts) AS u(b, c)
          WHERE r.latency_buckets IS NOT NULL
         UNION ALL
         SELECT NULL, r.calls WHERE r.latency_buckets IS NULL) h
      GROUP BY h.bucket`,
    [window.windowMs, window.excludedSlots, window.endsAgoMs ?? NO_END_MS],
  );
  if (result.rows.length === 0) return undefined;
  const counts = new Array<number>(LATENCY_BUCKETS).fill(0);
  let calls = 0;
  const legacy = result.rows.find((row) => row.bucket === null);
  for (const row of result.rows) {
    if (row.bucket === null) continue;
    counts[Math.min(LATENCY_BUCKETS - 1, Math.max(0, row.bucket))]! += Number(row.calls);
    calls += Number(row.calls);
  }
  if (legacy) {
    // Rare (a mix of router versions): their calls at the highest p99 they reported over the window.
    const p99 = await db.query<{ p99_ms: number }>(
      `SELECT max(p99_ms)::float8 AS p99_ms FROM reshard.slot_load
        WHERE period_start >= now() - $1 * interval '1 millisecond' AND period_start < now() - $3 * interval '1 millisecond'
          AND slot <> ALL ($2::int[]) AND latency_buckets IS NULL`,
      [window.windowMs, window.excludedSlots, window.endsAgoMs ?? NO_END_MS],
    );
    counts[latencyBucket(p99.rows[0]?.p99_ms ?? 0)]! += Number(legacy.calls);
    calls += Number(legacy.calls);
  }
  if (calls === 0) return undefined;
  return { counts, calls, reportPeriodMsMax: result.rows[0]!.period_ms_max };
}
