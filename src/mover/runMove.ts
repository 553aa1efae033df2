import { appendJournal, completedSteps, readJournal } from '../catalog/journal.js';
import { updateMove } from '../catalog/migrationRuns.js';
import { assert } from '../core/assert.js';
import type { MoveContext, MoveStep } from './moveStep.js';

export interface MoveOutcome {
  /** True when the move failed before its point of no return and its steps were undone. */
  rolledBack: boolean;
}

function errorText(error: unknown): string {
  if (error && typeof error === 'object' && 'line' in error && typeof (error as { line: unknown }).line === 'function') {
    return (error as { line(): string }).line();
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs a move's steps in order. Each step is journaled before it is taken and
 * after; steps the journal shows as done are skipped (resume). A failure before
 * the point of no return undoes the steps taken, in reverse; after it, the move
 * is left to be resumed forward.
 */
export async function runMove(context: MoveContext, steps: readonly MoveStep[]): Promise<void> {
  const { migrationId, slot, catalog } = context;
  const done = completedSteps(await readJournal(catalog, migrationId, slot));
  const taken: MoveStep[] = [];
  await updateMove(catalog, migrationId, slot, { state: 'running', error: null });
  let current: MoveStep | undefined;
  try {
    for (const step of steps) {
      current = step;
      if (done.has(step.name)) {
        taken.push(step);
        continue;
      }
      await appendJournal(catalog, { migrationId, slot, step: step.name, action: 'begin' });
      await updateMove(catalog, migrationId, slot, { step: step.name });
      context.emit({ type: 'step', migrationId, slot, step: step.name, action: 'begin' });
      await step.do(context);
      taken.push(step);
      await appendJournal(catalog, { migrationId, slot, step: step.name, action: 'done', detail: { ...context.facts } });
      context.emit({ type: 'step', migrationId, slot, step: step.name, action: 'done' });
    }
  } catch (error) {
    const message = errorText(error);
    await appendJournal(catalog, { migrationId, slot, step: current?.name ?? 'unknown', action: 'failed', detail: { error: message } }).catch(() => {});
    context.emit({ type: 'step', migrationId, slot, step: current?.name ?? 'unknown', action: 'failed' });
    const passedNoReturn = taken.some((step) => step.pointOfNoReturn);
    if (passedNoReturn) {
      await updateMove(catalog, migrationId, slot, { state: 'failed', error: message }).catch(() => {});
      throw error;
    }
    // The failed step may have done part of its work: undo it too.
    if (current && !taken.includes(current)) taken.push(current);
    try {
      await undoSteps(context, taken);
    } catch (undoError) {
      // Undo could not finish (a node is down): the journal keeps what is left.
      await updateMove(catalog, migrationId, slot, { state: 'failed', error: `${message}; undo stopped: ${errorText(undoError)}` }).catch(() => {});
      throw error;
    }
    await updateMove(catalog, migrationId, slot, { state: 'rolled_back', error: message });
    throw Object.assign(error instanceof Error ? error : new Error(message), { moveRolledBack: true });
  }
  await updateMove(catalog, migrationId, slot, {
    state: 'done',
    step: steps[steps.length - 1]!.name,
    // Bytes are the slot's measured size on disk, the unit of the plan and of progress.
    bytesCopied: context.bytesTotal,
    rowsCopied: context.facts['rowsCopied'] ?? 0,
  });
}

/** Undoes `taken` steps in reverse order, each journaled. */
export async function undoSteps(context: MoveContext, taken: readonly MoveStep[]): Promise<void> {
  const { migrationId, slot, catalog } = context;
  for (const step of [...taken].reverse()) {
    assert(!step.pointOfNoReturn, `step ${step.name} is past the point of no return and cannot be undone`);
    if (!step.undo) continue;
    await appendJournal(catalog, { migrationId, slot, step: step.name, action: 'undo' });
    context.emit({ type: 'step', migrationId, slot, step: step.name, action: 'undo' });
    await step.undo(context);
    await appendJournal(catalog, { migrationId, slot, step: step.name, action: 'undone' });
    context.emit({ type: 'step', migrationId, slot, step: step.name, action: 'undone' });
  }
}
