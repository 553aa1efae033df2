import { recordBytesCopied } from '../catalog/moveProgress.js';
import type { Queryable } from '../plumbing/queryable.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';

/** Often enough for a live progress bar, rare enough to cost the catalog nothing (one statement for all slots). */
export const PROGRESS_RECORD_INTERVAL_MS = 250;

/**
 * Passes every event on, and writes the movers' byte progress to the catalog
 * every `intervalMs`, so status and the dashboard in any process show bytes
 * copied of the slot's measured size while a copy runs. Writes are chained
 * (never two at once) and best effort: progress is never worth failing a move.
 */
export class ByteProgressRecorder {
  private readonly pending = new Map<number, number>();
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly catalog: Queryable,
    private readonly migrationId: number,
    private readonly next: MigrationEventSink,
    private readonly intervalMs = PROGRESS_RECORD_INTERVAL_MS,
  ) {}

  readonly sink: MigrationEventSink = (event) => {
    if (event.type === 'bytes' && event.migrationId === this.migrationId) this.pending.set(event.slot, event.bytesCopied);
    this.next(event);
  };

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private flush(): Promise<void> {
    if (this.pending.size > 0) {
      const bytesBySlot = new Map(this.pending);
      this.pending.clear();
      this.writing = this.writing.then(() => recordBytesCopied(this.catalog, this.migrationId, bytesBySlot)).catch(() => {});
    }
    return this.writing;
  }
}
