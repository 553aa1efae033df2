import { describe, expect, it } from 'vitest';
import type { JournalAction } from '../../src/catalog/journal.js';
import type { MigrationControl } from '../../src/catalog/migrationControl.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { isCancellation, MigrationCheckpoint, type ControlRecord } from '../../src/coordinator/migrationCheckpoint.js';
import { ReshardError } from '../../src/core/errors.js';

/** A migration's control kept in memory; every journal write recorded as "step action". */
class RecordingControl implements ControlRecord {
  readonly migrationId = 4;
  control: MigrationControl = 'run';
  unfinished = 0;
  reads = 0;
  readonly journaled: string[] = [];
  read(): Promise<MigrationControl> {
    this.reads++;
    return Promise.resolve(this.control);
  }
  journal(step: 'pause' | 'cancel', action: JournalAction, detail?: Record<string, unknown>): Promise<void> {
    this.journaled.push(`${step} ${action}${detail ? ` ${JSON.stringify(detail)}` : ''}`);
    return Promise.resolve();
  }
  unfinishedMoves(): Promise<number> {
    return Promise.resolve(this.unfinished);
  }
}

const LIMITS = { pollMs: 5, pauseMaxMs: 2_000 };

function checkpointOver(control: RecordingControl, limits = LIMITS): { checkpoint: MigrationCheckpoint; events: MigrationEvent[] } {
  const events: MigrationEvent[] = [];
  return { checkpoint: new MigrationCheckpoint(control, (event) => events.push(event), limits), events };
}

describe('MigrationCheckpoint', () => {
  it('passes at once while the migration runs, journaling nothing', async () => {
    const control = new RecordingControl();
    const { checkpoint, events } = checkpointOver(control);
    await checkpoint.pass();
    expect(control.journaled).toEqual([]);
    expect(events).toEqual([]);
  });

  it('holds while paused and lets every waiting unit go on at the resume; the pause is journaled once', async () => {
    const control = new RecordingControl();
    control.control = 'pause';
    const { checkpoint, events } = checkpointOver(control);
    let passed = 0;
    const waiting = [checkpoint.pass(), checkpoint.pass(), checkpoint.pass()].map((pass) => pass.then(() => { passed++; }));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(passed).toBe(0);
    control.control = 'run';
    await Promise.all(waiting);
    expect(passed).toBe(3);
    expect(control.journaled[0]).toBe('pause begin');
    expect(control.journaled[1]).toMatch(/^pause done \{"pausedMs":\d+\}$/);
    expect(control.journaled).toHaveLength(2);
    expect(events.map((event) => (event.type === 'control' ? event.control : event.type))).toEqual(['paused', 'resumed']);
  });

  it('turns a cancel into MigrationCancelled for cancellable work only, journaled once', async () => {
    const control = new RecordingControl();
    control.control = 'cancel';
    const { checkpoint, events } = checkpointOver(control);
    const first = await checkpoint.pass().catch((error: unknown) => error);
    expect(isCancellation(first)).toBe(true);
    expect((first as ReshardError).code).toBe('aborted');
    await expect(checkpoint.pass({ cancellable: true })).rejects.toSatisfy(isCancellation);
    // Work that must happen anyway (a cleanup after the switch) passes a cancel.
    await checkpoint.pass({ cancellable: false });
    expect(control.journaled).toEqual(['cancel begin']);
    expect(events.filter((event) => event.type === 'control')).toHaveLength(1);
  });

  it('a cancel during a pause ends the pause and cancels', async () => {
    const control = new RecordingControl();
    control.control = 'pause';
    const { checkpoint } = checkpointOver(control);
    const passing = checkpoint.pass().catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 20));
    control.control = 'cancel';
    expect(isCancellation(await passing)).toBe(true);
    expect(control.journaled.map((line) => line.split(' ').slice(0, 2).join(' '))).toEqual(['pause begin', 'pause done', 'cancel begin']);
  });

  it('a pause longer than its bound fails, journaled as a failed pause', async () => {
    const control = new RecordingControl();
    control.control = 'pause';
    const { checkpoint } = checkpointOver(control, { pollMs: 5, pauseMaxMs: 40 });
    const failure = await checkpoint.pass().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ReshardError);
    expect((failure as ReshardError).code).toBe('timeout');
    expect(control.journaled[0]).toBe('pause begin');
    expect(control.journaled[1]).toMatch(/^pause failed /);
  });

  it('ends a cancel as cancelled, or failed when moves were left half-done', async () => {
    const control = new RecordingControl();
    const { checkpoint } = checkpointOver(control);
    expect(await checkpoint.finishCancel()).toBe('cancelled');
    control.unfinished = 2;
    expect(await checkpoint.finishCancel()).toBe('failed');
    expect(control.journaled).toEqual(['cancel done {"movesLeftHalfDone":0}', 'cancel failed {"movesLeftHalfDone":2}']);
  });
});
