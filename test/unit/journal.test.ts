import { describe, expect, it } from 'vitest';
import { completedSteps, WHOLE_MOVE_STEP, type JournalAction, type JournalEntry } from '../../src/catalog/journal.js';

function journal(...entries: [string, JournalAction][]): JournalEntry[] {
  return entries.map(([step, action], index) => ({ id: index + 1, migrationId: 1, slot: 3, step, action, at: new Date(0), detail: undefined }));
}

describe('completedSteps: what a resume may skip', () => {
  it('a step is done after its done, and again not done once it begins again', () => {
    expect(completedSteps(journal(['prepare', 'begin'], ['prepare', 'done'], ['freeze', 'begin']))).toEqual(new Set(['prepare']));
    expect(completedSteps(journal(['prepare', 'begin'], ['prepare', 'done'], ['prepare', 'begin']))).toEqual(new Set());
  });

  it('a step whose undo began is not done, even if the undo never finished (a crash halfway)', () => {
    const entries = journal(['freeze', 'begin'], ['freeze', 'done'], ['sync', 'begin'], ['sync', 'done'], ['attach', 'begin'], ['attach', 'failed'],
      ['attach', 'undo'], ['sync', 'undo'], ['freeze', 'undo']);
    expect(completedSteps(entries)).toEqual(new Set());
    expect(completedSteps(entries.slice(0, 8))).toEqual(new Set(['freeze']));
  });

  it('an abandoned cutover attempt leaves the earlier steps done and the attempt\'s steps to be taken again', () => {
    const entries = journal(['prepare', 'begin'], ['prepare', 'done'], ['stream', 'begin'], ['stream', 'done'],
      ['freeze', 'begin'], ['freeze', 'done'], ['sync', 'begin'], ['sync', 'done'], ['attach', 'begin'],
      ['attach', 'undo'], ['sync', 'undo'], ['freeze', 'undo'], ['attach', 'undone'], ['sync', 'undone'], ['freeze', 'undone']);
    expect(completedSteps(entries)).toEqual(new Set(['prepare', 'stream']));
  });

  it('the undo of a whole online move makes every step not done', () => {
    const entries = journal(['prepare', 'begin'], ['prepare', 'done'], ['stream', 'begin'], ['stream', 'done'], ['freeze', 'begin'], ['freeze', 'done'],
      [WHOLE_MOVE_STEP, 'undo']);
    expect(completedSteps(entries)).toEqual(new Set());
    // Begun afresh by a resume: only what it finished counts.
    expect(completedSteps([...entries, ...journal(['prepare', 'begin'], ['prepare', 'done'])])).toEqual(new Set(['prepare']));
  });
});
