/**
 * The latency histogram routers keep per slot and report to the catalog:
 * buckets of 2^(1/4) (about 19 %) from LATENCY_FLOOR_MS; 80 of them reach
 * about 45 s, the last one holds everything above. Sums of such histograms
 * (over slots, routers and periods) give the p99 of all those calls together
 * — what clients feel — which no mix of per-slot percentiles can.
 */
export const LATENCY_BUCKETS = 80;
const LATENCY_FLOOR_MS = 0.05;
const BUCKETS_PER_DOUBLING = 4;

export function latencyBucket(latencyMs: number): number {
  if (!(latencyMs > LATENCY_FLOOR_MS)) return 0;
  const bucket = Math.ceil(Math.log2(latencyMs / LATENCY_FLOOR_MS) * BUCKETS_PER_DOUBLING);
  return bucket < LATENCY_BUCKETS ? bucket : LATENCY_BUCKETS - 1;
}

/** The upper edge of a bucket: a percentile is reported as the edge of the bucket it falls in (≤ 19 % high). */
export function bucketUpperMs(bucket: number): number {
  return LATENCY_FLOOR_MS * 2 ** (bucket / BUCKETS_PER_DOUBLING);
}

/** Nearest rank: the upper edge of the bucket holding the `fraction` rank of `total` calls. */
export function bucketPercentile(counts: ArrayLike<number>, total: number, fraction: number): number {
  const rank = Math.max(1, Math.ceil(total * fraction));
  let seen = 0;
  for (let bucket = 0; bucket < counts.length; bucket++) {
    seen += counts[bucket]!;
    if (seen >= rank) return bucketUpperMs(bucket);
  }
  return bucketUpperMs(counts.length - 1);
}

/**
 * The `fraction` percentile of a histogram, interpolated within its bucket
 * (geometrically, between the bucket's edges, by the rank's place among the
 * bucket's calls): a ratio of two such percentiles moves smoothly instead of
 * in steps of 19 %, which matters for a bound like 1.2×. Undefined without calls.
 */
export function interpolatedPercentileMs(counts: ArrayLike<number>, fraction: number): number | undefined {
  let total = 0;
  for (let bucket = 0; bucket < counts.length; bucket++) total += counts[bucket]!;
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(total * fraction));
  let seen = 0;
  for (let bucket = 0; bucket < counts.length; bucket++) {
    const inBucket = counts[bucket]!;
    if (seen + inBucket >= rank) {
      const upperMs = bucketUpperMs(bucket);
      if (bucket === 0) return upperMs;
      const lowerMs = bucketUpperMs(bucket - 1);
      return lowerMs * (upperMs / lowerMs) ** ((rank - seen) / inBucket);
    }
    seen += inBucket;
  }
  return bucketUpperMs(counts.length - 1);
}

/** A histogram's non-empty buckets as two parallel lists: a period of a few calls sends a few numbers. */
export function sparseHistogram(counts: ArrayLike<number>): { buckets: number[]; counts: number[] } {
  const sparse = { buckets: [] as number[], counts: [] as number[] };
  for (let bucket = 0; bucket < counts.length; bucket++) {
    if (counts[bucket]! > 0) {
      sparse.buckets.push(bucket);
      sparse.counts.push(counts[bucket]!);
    }
  }
  return sparse;
}
