import type { MoveStepName } from '../core/moveStepNames.js';

/** What a running migration reports, for progress bars, JSON lines and the dashboard. */
export type MigrationEvent =
  | { type: 'migration_started'; migrationId: number; mode: string; moves: number; bytesTotal: number; resumed: boolean }
  | { type: 'step'; migrationId: number; slot: number; step: MoveStepName; action: 'begin' | 'done' | 'undo' | 'undone' | 'failed' }
  | { type: 'bytes'; migrationId: number; slot: number; bytesCopied: number; bytesTotal: number }
  | { type: 'move_done'; migrationId: number; slot: number; source: string; target: string; bytes: number; rows: number; seconds: number; pauseMs?: number }
  | { type: 'move_failed'; migrationId: number; slot: number; source: string; target: string; error: string; rolledBack: boolean }
  | { type: 'throttle'; migrationId: number; state: 'held' | 'released'; reason: string }
  | { type: 'migration_finished'; migrationId: number; state: string; seconds: number; slotsMoved: number; bytesMoved: number; error?: string }
  /** An operator's request took effect: held at a checkpoint, going on again, or cancelling (rolling back what has not switched). */
  | { type: 'control'; migrationId: number; control: 'paused' | 'resumed' | 'cancelled'; pausedMs?: number };

export type MigrationEventSink = (event: MigrationEvent) => void;
