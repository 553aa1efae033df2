import { recordSlotLoad, SLOT_LOAD_RETENTION_MS_DEFAULT } from '../catalog/slotLoad.js';
import type { Queryable } from '../plumbing/queryable.js';
import { SlotLoadMeter } from './slotLoadMeter.js';

export const LOAD_REPORT_MS_DEFAULT = 10_000;
/** Longest a closing router waits for its last report. */
const LAST_REPORT_WAIT_MS = 1_000;

/**
 * Sends a router's per-slot load to the catalog once per period (one
 * statement, only slots with calls; it also prunes old samples). Best effort:
 * a period that cannot be written (catalog away, catalog older than the
 * slot_load table) is dropped, and the router serves on.
 */
export class SlotLoadReporter {
  readonly meter = new SlotLoadMeter();
  private timer: NodeJS.Timeout | undefined;
  private periodStart = new Date();
  private sending: Promise<void> | undefined;

  constructor(
    private readonly routerId: string,
    private readonly catalog: () => Queryable | undefined,
    private readonly periodMs: number = LOAD_REPORT_MS_DEFAULT,
    private readonly retentionMs: number = SLOT_LOAD_RETENTION_MS_DEFAULT,
  ) {}

  start(): void {
    if (this.periodMs <= 0 || this.timer) return;
    this.meter.take();
    this.periodStart = new Date();
    this.timer = setInterval(() => void this.flush(), this.periodMs);
    this.timer.unref();
  }

  /** Stops reporting after sending the last, partial period (waiting at most LAST_REPORT_WAIT_MS: a stalled catalog does not hold a router's close). */
  async stop(): Promise<void> {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise<void>((resolve) => { timeout = setTimeout(resolve, LAST_REPORT_WAIT_MS); })]);
    clearTimeout(timeout);
  }

  private flush(): Promise<void> {
    const samples = this.meter.take();
    const periodStart = this.periodStart;
    const now = new Date();
    this.periodStart = now;
    const catalog = this.catalog();
    // One report at a time: while the catalog is slow, later periods are dropped instead of piling up.
    if (samples.length === 0 || !catalog || this.sending) return this.sending ?? Promise.resolve();
    this.sending = recordSlotLoad(catalog, {
      routerId: this.routerId, periodStart, periodMs: now.getTime() - periodStart.getTime(), samples, retentionMs: this.retentionMs,
    }).catch(() => {}).finally(() => { this.sending = undefined; });
    return this.sending;
  }
}
