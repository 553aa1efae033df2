import cliProgress from 'cli-progress';
import { formatBytes } from '../core/bytes.js';
import type { MigrationEvent } from '../coordinator/events.js';
import type { Output } from './output.js';

/**
 * Renders a migration's events: a live bar (slots, bytes, rate, ETA) on a
 * terminal, a line per move otherwise, JSON lines with --json.
 */
export class MigrationProgress {
  private bar: cliProgress.SingleBar | undefined;
  private readonly bytesBySlot = new Map<number, number>();
  private bytesTotal = 0;
  private slotsTotal = 0;
  private slotsDone = 0;
  private startedMs = Date.now();

  constructor(private readonly output: Output) {}

  readonly handle = (event: MigrationEvent): void => {
    if (this.output.json) {
      if (event.type !== 'bytes') this.output.event({ event: event.type, ...withoutType(event) });
      return;
    }
    switch (event.type) {
      case 'migration_started':
        this.startedMs = Date.now();
        this.bytesTotal = event.bytesTotal;
        this.slotsTotal = event.moves;
        this.output.text(`${event.resumed ? 'Resuming' : 'Running'} migration ${event.migrationId} (${event.mode}): ${event.moves} moves, ${formatBytes(event.bytesTotal)}`);
        if (this.output.interactive) {
          this.bar = new cliProgress.SingleBar({
            format: '  {bar} {percentage}% | slots {slots} | {copied} / {total} | {rate}/s | ETA {eta_formatted}',
            hideCursor: true,
            etaBuffer: 50,
            stream: this.output.errorStream as NodeJS.WriteStream,
          }, cliProgress.Presets.shades_classic);
          this.bar.start(Math.max(1, this.bytesTotal), 0, this.payload());
        }
        break;
      case 'bytes':
        this.bytesBySlot.set(event.slot, event.bytesCopied);
        this.bar?.update(this.bytesCopied(), this.payload());
        break;
      case 'move_done':
        this.slotsDone += 1;
        this.bytesBySlot.set(event.slot, Math.max(event.bytes, this.bytesBySlot.get(event.slot) ?? 0));
        if (this.bar) this.bar.update(this.bytesCopied(), this.payload());
        else this.output.text(`  slot ${event.slot}: ${event.source} → ${event.target}, ${event.rows} rows, ${formatBytes(event.bytes)} in ${event.seconds.toFixed(2)} s [${this.slotsDone}/${this.slotsTotal}]`);
        break;
      case 'move_failed':
        this.bar?.stop();
        this.bar = undefined;
        this.output.warn(`slot ${event.slot} (${event.source} → ${event.target}) failed${event.rolledBack ? ' and was rolled back' : ''}: ${event.error}`);
        break;
      case 'migration_finished':
        if (this.bar) {
          this.bar.update(Math.max(1, this.bytesTotal), this.payload());
          this.bar.stop();
          this.bar = undefined;
        }
        break;
      case 'step':
        break;
      case 'control':
        this.output.warn(event.control === 'paused' ? `migration ${event.migrationId} is paused; \`reshard resume\` continues it`
          : event.control === 'resumed' ? `migration ${event.migrationId} resumed after ${((event.pausedMs ?? 0) / 1000).toFixed(1)} s`
            : `migration ${event.migrationId} is cancelled: rolling back the moves that have not switched`);
        break;
    }
  };

  private bytesCopied(): number {
    let sum = 0;
    for (const bytes of this.bytesBySlot.values()) sum += bytes;
    return sum;
  }

  private payload(): Record<string, string> {
    const copied = this.bytesCopied();
    const seconds = Math.max(0.001, (Date.now() - this.startedMs) / 1000);
    return {
      slots: `${this.slotsDone}/${this.slotsTotal}`,
      copied: formatBytes(copied),
      total: formatBytes(this.bytesTotal),
      rate: formatBytes(copied / seconds),
    };
  }
}

function withoutType(event: MigrationEvent): Record<string, unknown> {
  const { type: _type, ...rest } = event;
  return rest;
}
