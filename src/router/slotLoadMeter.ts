import type { SlotLoadSample } from '../catalog/slotLoad.js';
import { bucketPercentile, LATENCY_BUCKETS, latencyBucket, sparseHistogram } from '../core/latencyHistogram.js';

export { bucketUpperMs, LATENCY_BUCKETS, latencyBucket } from '../core/latencyHistogram.js';

/**
 * Per-slot traffic counters of one router, kept in typed arrays so that
 * counting a call allocates nothing: calls, rows written and a latency
 * histogram per slot. Keyed by slot id (any id ≥ 0; the arrays grow, rarely,
 * when a larger id shows up). `take()` returns the period's numbers for the
 * slots that had calls and starts a new period.
 */
export class SlotLoadMeter {
  private capacity = 0;
  private calls = new Uint32Array(0);
  private rowsWritten = new Float64Array(0);
  private histogram = new Uint32Array(0);

  constructor(initialSlots = 256) {
    this.grow(initialSlots);
  }

  /** One finished call: its slot, how long it took and its result (rows written are read from a pg result's command and rowCount). */
  record(slot: number, latencyMs: number, result: unknown): void {
    if (slot >= this.capacity) this.grow(slot + 1);
    this.calls[slot]!++;
    const written = result as { command?: unknown; rowCount?: number | null } | null | undefined;
    const command = written?.command;
    if (command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE') this.rowsWritten[slot]! += written!.rowCount ?? 0;
    this.histogram[slot * LATENCY_BUCKETS + latencyBucket(latencyMs)]!++;
  }

  /** The period's numbers for every slot with calls (with its latency histogram, non-empty buckets only), then all counters back to 0. */
  take(): SlotLoadSample[] {
    const samples = [];
    for (let slot = 0; slot < this.capacity; slot++) {
      const calls = this.calls[slot]!;
      if (calls === 0) continue;
      const row = this.histogram.subarray(slot * LATENCY_BUCKETS, (slot + 1) * LATENCY_BUCKETS);
      samples.push({
        slot, calls, rowsWritten: this.rowsWritten[slot]!, p50Ms: bucketPercentile(row, calls, 0.5), p99Ms: bucketPercentile(row, calls, 0.99), latency: sparseHistogram(row),
      });
    }
    this.calls.fill(0);
    this.rowsWritten.fill(0);
    this.histogram.fill(0);
    return samples;
  }

  private grow(slots: number): void {
    const capacity = Math.max(slots, this.capacity * 2);
    const calls = new Uint32Array(capacity);
    calls.set(this.calls);
    const rowsWritten = new Float64Array(capacity);
    rowsWritten.set(this.rowsWritten);
    const histogram = new Uint32Array(capacity * LATENCY_BUCKETS);
    histogram.set(this.histogram);
    Object.assign(this, { capacity, calls, rowsWritten, histogram });
  }
}
