/**
 * The copy rate and ETA a progress bar shows, from samples of bytes copied so
 * far (pure: the caller passes the clock). The rate is measured over the last
 * `windowMs`, so a pause, a throttle or a slow slot shows within seconds, and
 * an ETA is given only once the rate is known: never "Infinity" or a guess
 * from the first chunk.
 */
export class CopyRate {
  private readonly samples: { atMs: number; bytes: number }[] = [];

  constructor(private readonly windowMs = 5_000, private readonly knownAfterMs = 1_000) {}

  /** Bytes copied so far (a running total; a smaller value, e.g. after a rollback, restarts the window). */
  record(atMs: number, bytesSoFar: number): void {
    const last = this.samples.at(-1);
    if (last && bytesSoFar < last.bytes) this.samples.length = 0;
    if (last && last.atMs === atMs) last.bytes = bytesSoFar;
    else this.samples.push({ atMs, bytes: bytesSoFar });
    // Keep one sample at or before the window's start, so the window is always full once it can be.
    while (this.samples.length > 2 && this.samples[1]!.atMs <= atMs - this.windowMs) this.samples.shift();
  }

  /** Bytes per second over the window ending at `nowMs`; undefined until `knownAfterMs` of samples exist. */
  bytesPerSec(nowMs: number): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last) return undefined;
    const spanMs = nowMs - first.atMs;
    if (spanMs < this.knownAfterMs) return undefined;
    return ((last.bytes - first.bytes) / spanMs) * 1000;
  }

  /** Seconds until `bytesTotal` at the current rate; undefined when the rate is unknown or zero. */
  etaSeconds(nowMs: number, bytesTotal: number): number | undefined {
    const rate = this.bytesPerSec(nowMs);
    const last = this.samples.at(-1);
    if (rate === undefined || !last || rate <= 0) return undefined;
    return Math.max(0, (bytesTotal - last.bytes) / rate);
  }
}

/** "45s", "3m05s", "2h07m"; "–" when unknown. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '–';
  const whole = Math.ceil(seconds);
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}
