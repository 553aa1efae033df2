import type { MigrationEvent } from '../plumbing/migrationEvents.js';
import type { OperationSample } from './workload.js';

/**
 * When each slot's cutover began (freeze) and ended (switch), on the
 * workload's clock, so client-seen pauses can be attributed to moves.
 */
export class MoveTimeline {
  private readonly cutovers = new Map<string, { slot: number; freezeMs: number; switchedMs?: number }>();
  private readonly moving = new Set<number>();

  constructor(private readonly now: () => number) {}

  /** Every step event per slot with its time, printed when a check fails. */
  readonly stepLog = new Map<number, string[]>();

  readonly handle = (event: MigrationEvent): void => {
    if (event.type === 'step') {
      const lines = this.stepLog.get(event.slot) ?? [];
      lines.push(`m${event.migrationId} ${event.step} ${event.action} @${Math.round(this.now())}`);
      this.stepLog.set(event.slot, lines);
    }
    const key = 'slot' in event ? `${event.migrationId}:${event.slot}` : '';
    if (event.type === 'step' && event.step === 'prepare' && event.action === 'begin') this.moving.add(event.slot);
    if (event.type === 'step' && event.step === 'freeze' && event.action === 'begin') this.cutovers.set(key, { slot: event.slot, freezeMs: this.now() });
    if (event.type === 'step' && event.step === 'switch' && event.action === 'done') {
      const cutover = this.cutovers.get(key);
      if (cutover) cutover.switchedMs = this.now();
    }
    if (event.type === 'move_done' || event.type === 'move_failed') this.moving.delete(event.slot);
  };

  /** Slots whose move has begun and not finished: where a workload should look. */
  movingSlots(): number[] {
    return [...this.moving];
  }

  /**
   * Per finished cutover, the longest call on that slot that overlapped it:
   * the write pause a client saw. Cutovers no call overlapped are left out.
   */
  pausesMs(samples: readonly OperationSample[]): number[] {
    const pauses: number[] = [];
    for (const cutover of this.cutovers.values()) {
      if (cutover.switchedMs === undefined) continue;
      let longest: number | undefined;
      for (const sample of samples) {
        if (sample.slot !== cutover.slot) continue;
        const end = sample.startMs + sample.latencyMs;
        if (sample.startMs <= cutover.switchedMs && end >= cutover.freezeMs) longest = Math.max(longest ?? 0, sample.latencyMs);
      }
      if (longest !== undefined) pauses.push(longest);
    }
    return pauses;
  }

  /** Cutover windows, for telling samples on moving slots from the rest. */
  windows(): { slot: number; fromMs: number; toMs: number }[] {
    return [...this.cutovers.values()].filter((c) => c.switchedMs !== undefined).map((c) => ({ slot: c.slot, fromMs: c.freezeMs, toMs: c.switchedMs! }));
  }
}
