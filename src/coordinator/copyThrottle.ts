import { assert } from '../core/assert.js';
import { ReshardError } from '../core/errors.js';
import { errorFields, log } from '../plumbing/log.js';
import { startWaitLog, type WaitLog } from '../plumbing/waitLog.js';
import type { CopyGate } from '../node/copyMeter.js';

const logger = log('throttle');

export interface CopyThrottleLimits {
  /**
   * Cap on the bytes all copies of a migration move per second, together; none when absent. Bytes of
   * the slots' measured size on disk, as progress counts them (see mover/settleCopyProgress.ts).
   */
  bytesPerSecMax?: number;
  /** Longest copying may stay held (e.g. while a subscription lags) before the migration gives up. */
  holdMsMax: number;
}

export interface ThrottleClock {
  nowMs(): number;
  sleep(ms: number): Promise<void>;
}

const REAL_CLOCK: ThrottleClock = {
  nowMs: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * The one gate every copy stream of a migration passes through: a shared
 * rate cap (chunks are spaced so the sum of all lanes stays under it) and a
 * hold that the replication watch sets while a subscription lags or WAL
 * piles up, released when it recovers. A hold has a time limit; past it, or
 * after `fail`, every copy stops with that error.
 */
export class CopyThrottle implements CopyGate {
  private nextFreeAtMs = 0;
  private holdReason: string | undefined;
  private heldSinceMs = 0;
  private failure: Error | undefined;
  private readonly releaseWaiters = new Set<() => void>();
  private streamedBytesTotal = 0;
  private admittedBytesTotal = 0;
  private holdLog: WaitLog | undefined;
  private pauseReason: string | undefined;

  constructor(private limits: CopyThrottleLimits, private readonly clock: ThrottleClock = REAL_CLOCK) {
    assert(limits.bytesPerSecMax === undefined || limits.bytesPerSecMax > 0, 'a copy rate cap is positive');
    assert(limits.holdMsMax > 0, 'a copy hold has a positive limit');
  }

  /** Bytes every copy streamed through this gate so far (COPY format; the rest of the slots' size not counted). */
  get streamedBytes(): number {
    return this.streamedBytesTotal;
  }

  /** Bytes admitted so far, streamed and unstreamed: the unit of the rate cap (a slot's size on disk). */
  get admittedBytes(): number {
    return this.admittedBytesTotal;
  }

  /**
   * Stops every copy at its next chunk (and a cutover before it starts) until
   * `resume`: the latency guard's brake. Unlike a hold it has no time limit
   * here — the guard bounds its own pauses — and the replication watch's
   * release does not end it.
   */
  pause(reason: string): void {
    if (this.pauseReason === undefined) logger.info({ reason }, `copying paused: ${reason}`);
    this.pauseReason = reason;
  }

  resume(): void {
    if (this.pauseReason === undefined) return;
    logger.info('copying resumed');
    this.pauseReason = undefined;
    for (const wake of [...this.releaseWaiters]) wake();
  }

  /** Why copying is paused now (by the latency guard), if it is. */
  get pausedFor(): string | undefined {
    return this.pauseReason;
  }

  /** Changes the shared rate cap while copies run (the latency guard slows them down and lets them go faster again). */
  setBytesPerSecMax(bytesPerSecMax: number | undefined): void {
    assert(bytesPerSecMax === undefined || bytesPerSecMax > 0, 'a copy rate cap is positive');
    const { bytesPerSecMax: _previous, ...rest } = this.limits;
    this.limits = bytesPerSecMax === undefined ? rest : { ...rest, bytesPerSecMax };
  }

  /** Why copying is held now, if it is. */
  get heldFor(): string | undefined {
    return this.holdReason;
  }

  async admit(bytes: number, kind: 'streamed' | 'unstreamed' = 'streamed'): Promise<void> {
    while (!this.failure) {
      if (this.holdReason !== undefined) {
        const heldMs = this.clock.nowMs() - this.heldSinceMs;
        if (heldMs >= this.limits.holdMsMax) {
          this.fail(new ReshardError('timeout', `copying was held for ${Math.round(heldMs)} ms (${this.holdReason}), over its ${this.limits.holdMsMax} ms limit`,
            'lower the write load on the source, or raise the lag limit (--max-lag) or the hold limit'));
          break;
        }
        await this.waitForRelease(Math.min(250, this.limits.holdMsMax - heldMs));
      } else if (this.pauseReason !== undefined) {
        // A pause has no limit of its own: the guard that set it ends it (its pauses are bounded there).
        await this.waitForRelease(250);
      } else {
        break;
      }
    }
    if (this.failure) throw this.failure;
    if (kind === 'streamed') this.streamedBytesTotal += bytes;
    this.admittedBytesTotal += bytes;
    const rate = this.limits.bytesPerSecMax;
    if (rate === undefined) return;
    const now = this.clock.nowMs();
    const startMs = Math.max(now, this.nextFreeAtMs);
    this.nextFreeAtMs = startMs + (bytes / rate) * 1000;
    if (startMs > now) await this.clock.sleep(startMs - now);
  }

  hold(reason: string): void {
    if (this.holdReason === undefined) {
      this.heldSinceMs = this.clock.nowMs();
      logger.info({ reason, holdMsMax: this.limits.holdMsMax }, `copying held: ${reason}`);
      this.holdLog = startWaitLog(logger, `the hold on copying to be released (${reason})`, this.limits.holdMsMax);
    }
    this.holdReason = reason;
  }

  release(): void {
    if (this.holdReason !== undefined) logger.info({ heldMs: Math.round(this.clock.nowMs() - this.heldSinceMs) }, 'copying released');
    this.holdLog?.end('done');
    this.holdLog = undefined;
    this.holdReason = undefined;
    for (const wake of [...this.releaseWaiters]) wake();
  }

  /** Stops every copy with `error` (e.g. WAL retained over its limit). */
  fail(error: Error): void {
    if (!this.failure) logger.error(errorFields(error), 'every copy of the migration stops');
    this.holdLog?.end('failed', errorFields(error));
    this.holdLog = undefined;
    this.failure ??= error;
    for (const wake of [...this.releaseWaiters]) wake();
  }

  private waitForRelease(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.releaseWaiters.delete(wake);
        resolve();
      };
      this.releaseWaiters.add(wake);
      void this.clock.sleep(Math.max(1, timeoutMs)).then(wake);
    });
  }
}
