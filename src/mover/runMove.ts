import { StepRunner, type StepEvent } from './stepRunner.js';
import { catalogStepJournal } from './stepJournal.js';
import type { MoveStep } from './moveStep.js';
import type { OfflineMoveContext } from './offlineSteps.js';

/**
 * Runs one slot's move through the step runner: resumed from its journal,
 * every step journaled, a failure before the point of no return undone in
 * reverse (`MoveRolledBack`); after it, the move is left to be resumed forward.
 */
export async function runMove(context: OfflineMoveContext, steps: readonly MoveStep<OfflineMoveContext>[]): Promise<void> {
  const { slot } = context;
  const journal = catalogStepJournal(context.catalog, context.migrationId);
  const runner = await StepRunner.open(journal, [slot], (event: StepEvent) => context.emit(event));
  await journal.moveState(slot, { state: 'running', error: null });
  await runner.run(steps, context, [slot], { rollBackOnFailure: true, facts: () => ({ ...context.facts }) });
  await journal.moveState(slot, {
    state: 'done',
    step: steps[steps.length - 1]!.name,
    // Bytes are the slot's measured size on disk, the unit of the plan and of progress.
    bytesCopied: context.bytesTotal,
    rowsCopied: context.facts['rowsCopied'] ?? 0,
  });
}
