/**
 * The names of every step any kind of move takes, as the journal, the move's
 * record, status, the dashboard and the fault matrix name them. One list: a
 * step named anywhere else is a step of this list.
 */
export const MOVE_STEP_NAMES = ['prepare', 'stream', 'freeze', 'copy', 'verify', 'sync', 'attach', 'switch', 'cleanup'] as const;

export type MoveStepName = (typeof MOVE_STEP_NAMES)[number];

export function isMoveStepName(name: string): name is MoveStepName {
  return (MOVE_STEP_NAMES as readonly string[]).includes(name);
}

/** Journal entries of a whole migration (no slot): a pause, a cancel, the migration's end in failure. */
export type MigrationJournalStep = 'pause' | 'cancel' | 'migration';

/** Every step name the journal is written with. */
export type JournalStepName = MoveStepName | MigrationJournalStep;
