import { assert } from '../core/assert.js';
import type { CopyGate } from '../node/copyMeter.js';

/** Progress moves on in steps this big while the rest of a slot's size is charged: a smooth bar, few events. */
const SETTLE_STEP_BYTES = 256 * 1024;

/**
 * The copy cap (--max-copy-rate) and the progress bar count the same bytes:
 * the slot's size measured on disk, the unit of the plan, of `bytes_total`,
 * status and the dashboard, known before the copy starts (so the bar has a
 * real 100 %). A binary COPY stream is smaller than that — no indexes, no page
 * and tuple overhead, about a third of it for the demo's tables — and its
 * chunks pass the gate as they stream. Once a slot's stream has ended, the
 * rest of its measured size is charged to the gate as well, in steps that move
 * the progress on as each is admitted: progress and cap then advance at the
 * same rate, and a cap of 1 MB/s moves 1 MB of slot per second.
 */
export async function settleCopyProgress(
  gate: CopyGate | undefined,
  streamedBytes: number,
  bytesTotal: number,
  onProgress: (bytesCopied: number) => void,
): Promise<void> {
  assert(streamedBytes >= 0 && bytesTotal >= 0, 'byte counts are not negative');
  let copied = Math.min(streamedBytes, bytesTotal);
  while (copied < bytesTotal) {
    const step = Math.min(SETTLE_STEP_BYTES, bytesTotal - copied);
    if (gate) await gate.admit(step, 'unstreamed');
    copied += step;
    onProgress(copied);
  }
}
