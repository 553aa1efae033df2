import { log } from '../plumbing/log.js';
import type { JournalStepName } from '../core/moveStepNames.js';
import type { JournalAction } from './journalAction.js';

/**
 * The journal's log: every journaled step (begin, done, failed, undo,
 * undone) as one log line, with the migration, slot, step, the move's nodes
 * (when this process runs the move) and, at the end of a step, how long it
 * took. Every step passes through the journal, so this is the one place
 * steps are logged.
 */
const logger = log('journal');

/** Moves this process runs, for their node names: bounded, oldest dropped first. */
const MOVES_KNOWN_MAX = 10_000;
const nodesByMove = new Map<string, { source: string; target: string }>();
/** When each step began in this process (performance.now()), for its duration. */
const beganAtByStep = new Map<string, number>();

function moveKey(migrationId: number, slot: number | undefined): string {
  return `${migrationId}:${slot ?? '-'}`;
}

/** Tells the log which nodes a migration's moves go between (the coordinator, when it loads them). */
export function noteMoveNodes(moves: readonly { migrationId: number; slot: number; source: string; target: string }[]): void {
  for (const move of moves) {
    nodesByMove.delete(moveKey(move.migrationId, move.slot));
    nodesByMove.set(moveKey(move.migrationId, move.slot), { source: move.source, target: move.target });
  }
  for (const key of nodesByMove.keys()) {
    if (nodesByMove.size <= MOVES_KNOWN_MAX) break;
    nodesByMove.delete(key);
  }
}

export function logJournalEntry(entry: { migrationId: number; slot?: number | undefined; step: JournalStepName; action: JournalAction; detail?: Record<string, unknown> | undefined }): void {
  const key = `${moveKey(entry.migrationId, entry.slot)}:${entry.step}`;
  const nodes = entry.slot === undefined ? undefined : nodesByMove.get(moveKey(entry.migrationId, entry.slot));
  let durationMs: number | undefined;
  if (entry.action === 'begin' || entry.action === 'undo') {
    beganAtByStep.set(key, performance.now());
    if (beganAtByStep.size > MOVES_KNOWN_MAX) beganAtByStep.delete(beganAtByStep.keys().next().value!);
  } else {
    const began = beganAtByStep.get(key);
    if (began !== undefined) durationMs = Math.round(performance.now() - began);
    beganAtByStep.delete(key);
  }
  const fields = {
    migrationId: entry.migrationId,
    ...(entry.slot !== undefined ? { slot: entry.slot } : {}),
    step: entry.step,
    action: entry.action,
    ...(nodes ?? {}),
    ...(durationMs !== undefined ? { durationMs } : {}),
    ...(entry.detail ? { detail: entry.detail } : {}),
  };
  const where = entry.slot === undefined ? `migration ${entry.migrationId}` : `slot ${entry.slot}${nodes ? ` ${nodes.source} → ${nodes.target}` : ''}`;
  const took = durationMs !== undefined ? ` in ${durationMs} ms` : '';
  switch (entry.action) {
    case 'begin': logger.info(fields, `${where}: ${entry.step} begins`); break;
    case 'done': logger.info(fields, `${where}: ${entry.step} done${took}`); break;
    case 'failed': logger.error(fields, `${where}: ${entry.step} failed${took}`); break;
    case 'undo': logger.info(fields, entry.detail?.['attempt'] !== undefined
      ? `${where}: ${entry.step} abandoned (attempt ${String(entry.detail['attempt'])}), retrying: ${String(entry.detail['reason'] ?? '')}`
      : `${where}: undoing ${entry.step}`); break;
    case 'undone': logger.info(fields, `${where}: ${entry.step} undone${took}`); break;
  }
}
