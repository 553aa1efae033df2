import { appendJournal, type JournalAction } from '../catalog/journal.js';
import { unfinishedMoves } from '../catalog/migrationRuns.js';
import { readControl, type MigrationControl } from '../catalog/migrationControl.js';
import { errorText, ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { waitFor } from '../plumbing/waitFor.js';

/** How a coordinator follows pause and cancel requests. */
export interface ControlLimits {
  /** How often a paused coordinator looks at the catalog again. */
  pollMs: number;
  /** A pause longer than this fails the migration (rolling back what has not switched) rather than hold replication slots forever. */
  pauseMaxMs: number;
}

export const CONTROL_LIMITS_DEFAULT: ControlLimits = {
  pollMs: 250,
  pauseMaxMs: 24 * 60 * 60_000,
};

/** The failure a cancel request turns into: the ordinary failure path then rolls back every unswitched move. */
export class MigrationCancelled extends ReshardError {
  constructor(readonly migrationId: number) {
    super('aborted', `migration ${migrationId} was cancelled`, 'its moves that had not switched were rolled back; run `reshard rebalance` to plan again');
  }
}

export function isCancellation(error: unknown): error is MigrationCancelled {
  return error instanceof MigrationCancelled;
}

/** What a checkpoint reads and writes: the catalog's control of one migration, or a recording one in unit tests. */
export interface ControlRecord {
  readonly migrationId: number;
  read(): Promise<MigrationControl>;
  journal(step: 'pause' | 'cancel', action: JournalAction, detail?: Record<string, unknown>): Promise<void>;
  unfinishedMoves(): Promise<number>;
}

export function catalogControlRecord(catalog: Queryable, migrationId: number): ControlRecord {
  return {
    migrationId,
    read: () => readControl(catalog, migrationId),
    journal: (step, action, detail) => appendJournal(catalog, { migrationId, step, action, ...(detail ? { detail } : {}) }),
    unfinishedMoves: () => unfinishedMoves(catalog, migrationId),
  };
}

/**
 * The place between units of work where a coordinator honours pause and
 * cancel. Every unit of work in flight finishes (a copy, a cutover); only the
 * next one waits or is not started. Pause and cancel are journaled without a
 * slot, so a dashboard in another process sees them in the event log.
 */
export class MigrationCheckpoint {
  private held: Promise<MigrationControl> | undefined;
  private cancelNoted = false;

  readonly migrationId: number;

  constructor(
    private readonly record: ControlRecord,
    private readonly emit: MigrationEventSink,
    private readonly limits: ControlLimits = CONTROL_LIMITS_DEFAULT,
  ) {
    this.migrationId = record.migrationId;
  }

  /**
   * Waits while the migration is paused; throws `MigrationCancelled` when it
   * is cancelled and the next unit of work may be skipped (`cancellable`:
   * false for work that must happen anyway, e.g. cleanups after the switch,
   * or a move begun by an interrupted run that only its own steps can finish).
   */
  async pass(options: { cancellable?: boolean } = {}): Promise<void> {
    let control = await this.record.read();
    if (control === 'pause') {
      // Units of work reach the checkpoint in parallel: one waits and journals, the others share its wait.
      this.held ??= this.holdWhilePaused().finally(() => { this.held = undefined; });
      control = await this.held;
    }
    if (control === 'cancel' && (options.cancellable ?? true)) {
      await this.noteCancel();
      throw new MigrationCancelled(this.migrationId);
    }
  }

  /** The state a cancelled migration ends in: 'failed' if some move could not be rolled back (resume finishes it). */
  async finishCancel(): Promise<'cancelled' | 'failed'> {
    const leftHalfDone = await this.record.unfinishedMoves();
    await this.record.journal('cancel', leftHalfDone > 0 ? 'failed' : 'done', { movesLeftHalfDone: leftHalfDone });
    return leftHalfDone > 0 ? 'failed' : 'cancelled';
  }

  private async holdWhilePaused(): Promise<MigrationControl> {
    const { migrationId } = this;
    const pausedAt = performance.now();
    await this.record.journal('pause', 'begin');
    this.emit({ type: 'control', migrationId, control: 'paused' });
    try {
      const control = await waitFor(`a resume of paused migration ${migrationId}`, async () => {
        const current = await this.record.read();
        return current === 'pause' ? undefined : current;
      }, { timeoutMs: this.limits.pauseMaxMs, pollMs: this.limits.pollMs, fix: 'the migration was stopped and its unswitched moves rolled back; run `reshard rebalance` again', longIsExpected: true, logFields: { migrationId } });
      const pausedMs = Math.round(performance.now() - pausedAt);
      await this.record.journal('pause', 'done', { pausedMs });
      this.emit({ type: 'control', migrationId, control: 'resumed', pausedMs });
      return control;
    } catch (error) {
      await this.record.journal('pause', 'failed', { error: errorText(error) }).catch(() => {});
      throw error;
    }
  }

  private async noteCancel(): Promise<void> {
    if (this.cancelNoted) return;
    this.cancelNoted = true;
    await this.record.journal('cancel', 'begin');
    this.emit({ type: 'control', migrationId: this.migrationId, control: 'cancelled' });
  }
}
