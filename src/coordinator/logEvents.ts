import { log } from '../plumbing/log.js';
import type { MigrationEvent, MigrationEventSink } from '../plumbing/migrationEvents.js';

const logger = log('coordinator');

/**
 * The migration's events in the log as well as to `emit`: its start and
 * end, every move done or failed with its nodes and duration, throttle holds
 * and operator controls. Steps are logged by the journal; bytes are not
 * logged (the progress bar and `status` show them).
 */
export function loggingSink(emit: MigrationEventSink): MigrationEventSink {
  return (event) => {
    logEvent(event);
    emit(event);
  };
}

function logEvent(event: MigrationEvent): void {
  switch (event.type) {
    case 'migration_started':
      logger.info({ migrationId: event.migrationId, mode: event.mode, moves: event.moves, bytesTotal: event.bytesTotal, resumed: event.resumed },
        `migration ${event.migrationId} ${event.resumed ? 'resumes' : 'starts'}: ${event.moves} moves (${event.mode})`);
      return;
    case 'move_done':
      logger.info({ migrationId: event.migrationId, slot: event.slot, source: event.source, target: event.target, bytes: event.bytes, rows: event.rows, durationMs: Math.round(event.seconds * 1000), ...(event.pauseMs !== undefined ? { pauseMs: event.pauseMs } : {}) },
        `slot ${event.slot} ${event.source} → ${event.target}: moved`);
      return;
    case 'move_failed':
      logger.error({ migrationId: event.migrationId, slot: event.slot, source: event.source, target: event.target, error: event.error, rolledBack: event.rolledBack },
        `slot ${event.slot} ${event.source} → ${event.target}: failed${event.rolledBack ? ' and was rolled back' : ''}`);
      return;
    case 'throttle':
      logger.info({ migrationId: event.migrationId, state: event.state, reason: event.reason }, `copying ${event.state}: ${event.reason}`);
      return;
    case 'control':
      logger.info({ migrationId: event.migrationId, control: event.control, ...(event.pausedMs !== undefined ? { pausedMs: event.pausedMs } : {}) },
        `migration ${event.migrationId} ${event.control}`);
      return;
    case 'migration_finished': {
      const fields = { migrationId: event.migrationId, state: event.state, durationMs: Math.round(event.seconds * 1000), slotsMoved: event.slotsMoved, bytesMoved: event.bytesMoved, ...(event.error ? { error: event.error } : {}) };
      if (event.state === 'completed') logger.info(fields, `migration ${event.migrationId} completed`);
      else logger.error(fields, `migration ${event.migrationId} ${event.state}`);
      return;
    }
    case 'step':
    case 'bytes':
      return;
  }
}
