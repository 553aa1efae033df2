import cliProgress from 'cli-progress';
import { formatBytes } from '../core/bytes.js';
import type { MigrationEvent } from '../plumbing/migrationEvents.js';
import { CopyRate, formatEta } from './copyRate.js';
import type { Output } from './output.js';

/**
 * Renders a migration's events: on a terminal two live bars, the copy (bytes
 * of the slots' measured size on disk, the unit of the plan and of
 * --max-copy-rate, with the rate over the last seconds and an ETA) and the
 * switches (slots that changed owner, one step per switch: online, the copy of
 * a batch ends long before its slots switch); a line per move otherwise; JSON
 * lines with --json.
 */
export class MigrationProgress {
  private bars: cliProgress.MultiBar | undefined;
  private copyBar: cliProgress.SingleBar | undefined;
  private switchBar: cliProgress.SingleBar | undefined;
  private readonly bytesBySlot = new Map<number, number>();
  private readonly switchedSlots = new Set<number>();
  private readonly rate = new CopyRate();
  private bytesTotal = 0;
  private slotsTotal = 0;
  private slotsDone = 0;

  constructor(private readonly output: Output, private readonly nowMs: () => number = () => Date.now()) {}

  readonly handle = (event: MigrationEvent): void => {
    if (this.output.json) {
      if (event.type !== 'bytes') this.output.event({ event: event.type, ...withoutType(event) });
      return;
    }
    switch (event.type) {
      case 'migration_started':
        this.bytesTotal = event.bytesTotal;
        this.slotsTotal = event.moves;
        this.output.text(`${event.resumed ? 'Resuming' : 'Running'} migration ${event.migrationId} (${event.mode}): ${event.moves} moves, ${formatBytes(event.bytesTotal)}`);
        if (this.output.interactive) this.startBars();
        break;
      case 'bytes':
        this.bytesBySlot.set(event.slot, event.bytesCopied);
        this.rate.record(this.nowMs(), this.bytesCopied());
        this.redraw();
        break;
      case 'step':
        if (event.step === 'switch' && event.action === 'done') this.switchedSlots.add(event.slot);
        this.redraw();
        break;
      case 'move_done':
        this.slotsDone += 1;
        this.switchedSlots.add(event.slot);
        this.bytesBySlot.set(event.slot, Math.max(event.bytes, this.bytesBySlot.get(event.slot) ?? 0));
        this.rate.record(this.nowMs(), this.bytesCopied());
        if (this.bars) this.redraw();
        else this.output.text(`  slot ${event.slot}: ${event.source} → ${event.target}, ${event.rows} rows, ${formatBytes(event.bytes)} in ${event.seconds.toFixed(2)} s [${this.slotsDone}/${this.slotsTotal}]`);
        break;
      case 'move_failed':
        this.stopBars();
        this.output.warn(`slot ${event.slot} (${event.source} → ${event.target}) failed${event.rolledBack ? ' and was rolled back' : ''}: ${event.error}`);
        break;
      case 'migration_finished':
        if (this.bars && event.state === 'completed') {
          this.copyBar?.update(Math.max(1, this.bytesTotal), this.copyPayload());
          this.switchBar?.update(this.slotsTotal);
        }
        this.stopBars();
        break;
      case 'throttle':
        break;
      case 'control':
        this.output.warn(event.control === 'paused' ? `migration ${event.migrationId} is paused; \`reshard resume\` continues it`
          : event.control === 'resumed' ? `migration ${event.migrationId} resumed after ${((event.pausedMs ?? 0) / 1000).toFixed(1)} s`
            : `migration ${event.migrationId} is cancelled: rolling back the moves that have not switched`);
        break;
    }
  };

  private startBars(): void {
    this.bars = new cliProgress.MultiBar({
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      stream: this.output.errorStream as NodeJS.WriteStream,
    }, cliProgress.Presets.shades_classic);
    // Payload names must not be cli-progress's own ({total}, {value}, {eta}…): those it fills itself, as raw numbers.
    this.copyBar = this.bars.create(Math.max(1, this.bytesTotal), 0, this.copyPayload(), {
      format: '  copy   {bar} {percentage}% | {copiedText} / {totalText} | {rateText} | ETA {etaText}',
    });
    this.switchBar = this.bars.create(Math.max(1, this.slotsTotal), 0, {}, {
      format: '  switch {bar} {percentage}% | switched {value}/{total} slots',
    });
  }

  private stopBars(): void {
    this.bars?.stop();
    this.bars = undefined;
    this.copyBar = undefined;
    this.switchBar = undefined;
  }

  private redraw(): void {
    this.copyBar?.update(Math.min(this.bytesCopied(), Math.max(1, this.bytesTotal)), this.copyPayload());
    this.switchBar?.update(this.switchedSlots.size);
  }

  private bytesCopied(): number {
    let sum = 0;
    for (const bytes of this.bytesBySlot.values()) sum += bytes;
    return sum;
  }

  private copyPayload(): Record<string, string> {
    const now = this.nowMs();
    const copied = this.bytesCopied();
    const done = copied >= this.bytesTotal;
    const rate = this.rate.bytesPerSec(now);
    return {
      copiedText: formatBytes(copied),
      totalText: formatBytes(this.bytesTotal),
      rateText: done ? 'copied' : rate === undefined ? '– /s' : `${formatBytes(rate)}/s`,
      etaText: done ? '0s' : formatEta(this.rate.etaSeconds(now, this.bytesTotal)),
    };
  }
}

function withoutType(event: MigrationEvent): Record<string, unknown> {
  const { type: _type, ...rest } = event;
  return rest;
}
