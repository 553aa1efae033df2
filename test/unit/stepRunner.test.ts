import { describe, expect, it } from 'vitest';
import { completedSteps, type JournalAction, type JournalEntry, type JournalInStatement } from '../../src/catalog/journal.js';
import { ReshardError } from '../../src/core/errors.js';
import type { MoveStepName } from '../../src/core/moveStepNames.js';
import type { MoveStep } from '../../src/mover/moveStep.js';
import { MoveRolledBack } from '../../src/mover/moveRolledBack.js';
import type { StepJournal } from '../../src/mover/stepJournal.js';
import { StepRunner } from '../../src/mover/stepRunner.js';

/** A journal kept in memory, in the catalog journal's entry form, with every write in order. */
class RecordingJournal implements StepJournal {
  readonly migrationId = 1;
  readonly entries: JournalEntry[] = [];
  /** Writes as "slot step action"; a chained done+begin is one write. */
  readonly writes: string[] = [];
  readonly moveStates = new Map<number, string>();

  constructor(earlier: [number, MoveStepName, JournalAction][] = []) {
    for (const [slot, step, action] of earlier) this.add(slot, step, action);
  }

  private add(slot: number, step: MoveStepName, action: JournalAction): void {
    this.entries.push({ id: this.entries.length + 1, migrationId: 1, slot, step, action, at: new Date(0), detail: undefined });
  }

  private write(slot: number, ...parts: [MoveStepName, JournalAction][]): Promise<void> {
    for (const [step, action] of parts) this.add(slot, step, action);
    this.writes.push(parts.map(([step, action]) => `${slot} ${step} ${action}`).join(' + '));
    return Promise.resolve();
  }

  /** One write for several slots (one statement in the catalog), shown as "1,2 step action". */
  private writeAll(slots: readonly number[], ...parts: [MoveStepName, JournalAction][]): Promise<void> {
    for (const [step, action] of parts) for (const slot of slots) this.add(slot, step, action);
    this.writes.push(parts.map(([step, action]) => `${slots.join(',')} ${step} ${action}`).join(' + '));
    return Promise.resolve();
  }

  completed(slot: number): Promise<Set<MoveStepName>> {
    return Promise.resolve(completedSteps(this.entries.filter((entry) => entry.slot === slot)) as Set<MoveStepName>);
  }
  begin(slots: readonly number[], step: MoveStepName): Promise<void> { return this.writeAll(slots, [step, 'begin']); }
  finishAndBegin(slots: readonly number[], done: MoveStepName, _detail: unknown, begin: MoveStepName): Promise<void> { return this.writeAll(slots, [done, 'done'], [begin, 'begin']); }
  done(slots: readonly number[], step: MoveStepName): Promise<void> { return this.writeAll(slots, [step, 'done']); }
  /** Written when the step's statement says it committed, as one write (one statement in the catalog). */
  inStatement(slots: readonly number[], begin: MoveStepName, done: { step: MoveStepName } | undefined, onCommitted: () => void): JournalInStatement {
    return {
      ctes: () => '', parameter: '',
      committed: () => {
        void (done ? this.writeAll(slots, [done.step, 'done'], [begin, 'begin']) : this.writeAll(slots, [begin, 'begin']));
        onCommitted();
      },
    };
  }
  failed(slot: number, step: MoveStepName): Promise<void> { return this.write(slot, [step, 'failed']); }
  undo(slot: number, step: MoveStepName): Promise<void> { return this.write(slot, [step, 'undo']); }
  undone(slot: number, step: MoveStepName): Promise<void> { return this.write(slot, [step, 'undone']); }
  moveState(slot: number, change: { state?: string }): Promise<void> {
    if (change.state) this.moveStates.set(slot, change.state);
    return Promise.resolve();
  }

  movesState(slots: readonly number[], change: { state?: string }): Promise<void> {
    for (const slot of slots) if (change.state) this.moveStates.set(slot, change.state);
    return Promise.resolve();
  }
}

/** Step lists whose `do` and `undo` only record what they were called for; `failAt` makes a step fail. */
function recordingSteps(names: MoveStepName[], options: { pointOfNoReturn?: MoveStepName; failAt?: Partial<Record<MoveStepName, () => Error | undefined>>; noUndo?: MoveStepName[] } = {}) {
  const calls: string[] = [];
  const steps: MoveStep<unknown>[] = names.map((name) => ({
    name,
    describe: () => name,
    async do(_context, slots) {
      calls.push(`do ${name} ${slots.join(',')}`);
      const failure = options.failAt?.[name]?.();
      if (failure) throw failure;
    },
    ...(options.noUndo?.includes(name) || name === options.pointOfNoReturn ? {} : {
      async undo(_context: unknown, slots: readonly number[]) { calls.push(`undo ${name} ${slots.join(',')}`); },
    }),
    ...(name === options.pointOfNoReturn ? { pointOfNoReturn: true } : {}),
  }));
  return { steps, calls };
}

const CUTOVER: MoveStepName[] = ['freeze', 'sync', 'attach', 'switch', 'cleanup'];

describe('StepRunner: the one runner of every kind of move', () => {
  it('journals each step before and after it, chaining a done with the next begin in one write', async () => {
    const journal = new RecordingJournal();
    const { steps, calls } = recordingSteps(['prepare', 'freeze', 'copy']);
    const runner = await StepRunner.open(journal, [7], () => {});
    await runner.run(steps, undefined, [7]);
    expect(calls).toEqual(['do prepare 7', 'do freeze 7', 'do copy 7']);
    expect(journal.writes).toEqual(['7 prepare begin', '7 prepare done + 7 freeze begin', '7 freeze done + 7 copy begin', '7 copy done']);
  });

  it('journals a read-only step\'s begin while it runs, and a failed journal write still fails the step', async () => {
    const journal = new RecordingJournal();
    let releaseJournal!: () => void;
    const slowWrite = new Promise<void>((resolve) => { releaseJournal = resolve; });
    const order: string[] = [];
    const chained = journal.finishAndBegin.bind(journal);
    journal.finishAndBegin = async (...args: Parameters<RecordingJournal['finishAndBegin']>) => {
      order.push('journal sent');
      await slowWrite;
      await chained(...args);
      order.push('journal written');
    };
    const readOnly: MoveStep<unknown> = { name: 'sync', describe: () => 'sync', readOnly: true, async do() { order.push('sync runs'); releaseJournal(); } };
    const { steps } = recordingSteps(['freeze']);
    const runner = await StepRunner.open(journal, [3], () => {});
    await runner.run([...steps, readOnly], undefined, [3]);
    expect(order).toEqual(['journal sent', 'sync runs', 'journal written']);
    expect(journal.writes).toEqual(['3 freeze begin', '3 freeze done + 3 sync begin', '3 sync done']);

    const failing = new RecordingJournal();
    failing.begin = () => Promise.reject(new Error('catalog gone'));
    const ran: string[] = [];
    const other = await StepRunner.open(failing, [4], () => {});
    await expect(other.run([{ ...readOnly, async do() { ran.push('sync'); } }], undefined, [4])).rejects.toThrow('catalog gone');
    expect(ran).toEqual(['sync']);
  });

  it('lets a step write its begin (chained with the done before) in its own statement, and fails one that does not', async () => {
    const journal = new RecordingJournal();
    const order: string[] = [];
    const switchStep = (writes: boolean): MoveStep<unknown> => ({
      name: 'switch', describe: () => 'switch', pointOfNoReturn: true, journalsBeginInStatement: true,
      async do(_context, _slots, inStatement) {
        order.push(`switch gets its begin: ${inStatement !== undefined}`);
        if (writes) inStatement?.committed();
      },
    });
    const { steps } = recordingSteps(['sync']);
    const runner = await StepRunner.open(journal, [5], () => {});
    await runner.run([...steps, switchStep(true)], undefined, [5]);
    expect(order).toEqual(['switch gets its begin: true']);
    expect(journal.writes).toEqual(['5 sync begin', '5 sync done + 5 switch begin', '5 switch done']);
    expect(runner.isDone(5, 'switch')).toBe(true);

    // Not chained (the step before was done already): the begin alone.
    const alone = new RecordingJournal([[6, 'sync', 'begin'], [6, 'sync', 'done']]);
    await (await StepRunner.open(alone, [6], () => {})).run([...steps, switchStep(true)], undefined, [6]);
    expect(alone.writes).toEqual(['6 switch begin', '6 switch done']);

    const forgetful = new RecordingJournal();
    await expect((await StepRunner.open(forgetful, [8], () => {})).run([...steps, switchStep(false)], undefined, [8])).rejects.toThrow('wrote its begin');
    // Neither the switch's begin nor the chained done of the sync is on record: a resume takes both again.
    expect(forgetful.writes).toEqual(['8 sync begin']);
  });

  it('journals a step for several slots per slot, and its work once for all of them', async () => {
    const journal = new RecordingJournal([[2, 'prepare', 'begin'], [2, 'prepare', 'done']]);
    const { steps, calls } = recordingSteps(['prepare', 'stream']);
    const runner = await StepRunner.open(journal, [1, 2], () => {});
    await runner.run(steps, undefined, [1, 2]);
    expect(calls).toEqual(['do prepare 1', 'do stream 1,2']);
    expect(journal.writes).toEqual(['1 prepare begin', '1 prepare done', '1,2 stream begin', '1,2 stream done']);
  });

  it('on resume, skips the steps the journal shows done and takes the rest', async () => {
    const journal = new RecordingJournal([[3, 'freeze', 'begin'], [3, 'freeze', 'done'], [3, 'sync', 'begin'], [3, 'sync', 'done'], [3, 'attach', 'begin']]);
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch' });
    const runner = await StepRunner.open(journal, [3], () => {});
    await runner.run(steps, undefined, [3]);
    expect(calls).toEqual(['do attach 3', 'do switch 3', 'do cleanup 3']);
  });

  it('a failure before the point of no return undoes every step taken, the failed one included, in reverse, each journaled before it is taken', async () => {
    const journal = new RecordingJournal();
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch', failAt: { attach: () => new Error('lock lost') } });
    const runner = await StepRunner.open(journal, [4], () => {});
    const failure = await runner.run(steps, undefined, [4], { rollBackOnFailure: true }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(MoveRolledBack);
    expect((failure as MoveRolledBack).line()).toBe('lock lost');
    expect(calls).toEqual(['do freeze 4', 'do sync 4', 'do attach 4', 'undo attach 4', 'undo freeze 4']);
    // A step without an undo (sync) is journaled as undone too: a resume must take it again.
    expect(journal.writes.slice(-7)).toEqual(['4 attach failed', '4 attach undo', '4 attach undone', '4 sync undo', '4 sync undone', '4 freeze undo', '4 freeze undone']);
    expect(journal.moveStates.get(4)).toBe('rolled_back');
    expect(await journal.completed(4)).toEqual(new Set());
  });

  it('never undoes past the point of no return: a failure after it leaves the move failed, to be resumed forward', async () => {
    const journal = new RecordingJournal();
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch', failAt: { cleanup: () => new Error('source down') } });
    const runner = await StepRunner.open(journal, [5], () => {});
    const failure = await runner.run(steps, undefined, [5], { rollBackOnFailure: true }).catch((error: unknown) => error);
    expect(failure).not.toBeInstanceOf(MoveRolledBack);
    expect((failure as Error).message).toBe('source down');
    expect(calls.filter((call) => call.startsWith('undo'))).toEqual([]);
    expect(journal.moveStates.get(5)).toBe('failed');
    expect(await journal.completed(5)).toEqual(new Set(['freeze', 'sync', 'attach', 'switch']));
  });

  it('a failure of the point of no return itself is not undone either (it may have happened)', async () => {
    const journal = new RecordingJournal();
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch', failAt: { switch: () => new Error('catalog gone') } });
    const runner = await StepRunner.open(journal, [5], () => {});
    await expect(runner.run(steps, undefined, [5], { rollBackOnFailure: true })).rejects.toThrow('catalog gone');
    expect(calls.filter((call) => call.startsWith('undo'))).toEqual([]);
  });

  it('an undo that began is not done: a crash in the middle of an undo makes a resume take the step again', async () => {
    const journal = new RecordingJournal();
    const { steps } = recordingSteps(['prepare', 'freeze', 'copy']);
    const crashing: MoveStep<unknown>[] = steps.map((step) => (step.name === 'freeze' ? { ...step, undo: () => Promise.reject(new Error('crash')) } : step));
    const runner = await StepRunner.open(journal, [6], () => {});
    await runner.run(crashing, undefined, [6]);
    await expect(runner.undo(crashing, undefined, [6])).rejects.toThrow('crash');
    // copy was undone, freeze's undo began (journaled) and stopped, prepare is still done.
    expect(await journal.completed(6)).toEqual(new Set(['prepare']));
    const resumed = recordingSteps(['prepare', 'freeze', 'copy']);
    await (await StepRunner.open(journal, [6], () => {})).run(resumed.steps, undefined, [6]);
    expect(resumed.calls).toEqual(['do freeze 6', 'do copy 6']);
  });

  it('retries a retryable failure within its bound, undoing each abandoned attempt first, then gives up', async () => {
    const journal = new RecordingJournal();
    let syncs = 0;
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch', failAt: { sync: () => (++syncs <= 5 ? new ReshardError('timeout', 'over budget', 'retried') : undefined) } });
    const attempts: number[] = [];
    const retry = { attemptsMax: 3, retryable: (error: unknown) => error instanceof ReshardError && error.code === 'timeout', pauseMs: () => 0, beforeAttempt: (attempt: number) => { attempts.push(attempt); } };
    const runner = await StepRunner.open(journal, [8], () => {});
    await expect(runner.run(steps, undefined, [8], { retry })).rejects.toThrow('over budget');
    expect(attempts).toEqual([1, 2, 3]);
    expect(calls.filter((call) => call === 'do freeze 8')).toHaveLength(3);
    // Two abandoned attempts undone (sync, then freeze); the third's failure is left to the caller.
    expect(calls.filter((call) => call === 'undo freeze 8')).toHaveLength(2);
    expect(journal.writes.filter((write) => write === '8 sync undo')).toHaveLength(2);
    expect(calls).not.toContain('do switch 8');
  });

  it('a retry succeeds once the failure passes, and the journal ends with every step done', async () => {
    const journal = new RecordingJournal();
    let syncs = 0;
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch', failAt: { sync: () => (++syncs === 1 ? new ReshardError('timeout', 'over budget', 'retried') : undefined) } });
    const runner = await StepRunner.open(journal, [9], () => {});
    await runner.run(steps, undefined, [9], { retry: { attemptsMax: 3, retryable: () => true, pauseMs: () => 0 } });
    expect(calls).toEqual(['do freeze 9', 'do sync 9', 'undo freeze 9', 'do freeze 9', 'do sync 9', 'do attach 9', 'do switch 9', 'do cleanup 9']);
    expect(await journal.completed(9)).toEqual(new Set(CUTOVER));
  });

  it('does not retry a failure that is not retryable', async () => {
    const journal = new RecordingJournal();
    const { steps, calls } = recordingSteps(CUTOVER, { noUndo: ['sync'], pointOfNoReturn: 'switch', failAt: { sync: () => new Error('rows differ') } });
    const runner = await StepRunner.open(journal, [10], () => {});
    await expect(runner.run(steps, undefined, [10], { retry: { attemptsMax: 3, retryable: (error) => error instanceof ReshardError, pauseMs: () => 0 } })).rejects.toThrow('rows differ');
    expect(calls).toEqual(['do freeze 10', 'do sync 10']);
  });

  it('rollBack undoes a list for several slots, each step for all of them before the one before it', async () => {
    const journal = new RecordingJournal();
    const { steps, calls } = recordingSteps(['prepare', 'stream', 'freeze', 'sync', 'attach'], { noUndo: ['sync'] });
    const runner = await StepRunner.open(journal, [1, 2], () => {});
    const reported = await runner.rollBack(steps, undefined, [1, 2], new Error('batch failed'));
    expect(reported).toBeInstanceOf(MoveRolledBack);
    expect(calls).toEqual(['undo attach 1,2', 'undo freeze 1,2', 'undo stream 1,2', 'undo prepare 1,2']);
    expect(journal.moveStates.get(1)).toBe('rolled_back');
    expect(journal.moveStates.get(2)).toBe('rolled_back');
  });

  it('rollBack whose undo stops reports the failure itself and leaves the moves failed', async () => {
    const journal = new RecordingJournal();
    const { steps } = recordingSteps(['prepare', 'freeze']);
    const stuck = steps.map((step) => (step.name === 'prepare' ? { ...step, undo: () => Promise.reject(new Error('target down')) } : step));
    const failure = new Error('batch failed');
    const runner = await StepRunner.open(journal, [1], () => {});
    expect(await runner.rollBack(stuck, undefined, [1], failure)).toBe(failure);
    expect(journal.moveStates.get(1)).toBe('failed');
  });
});
