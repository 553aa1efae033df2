/** What a journal entry records of a step: it began, finished, failed, or its undo began or finished. */
export type JournalAction = 'begin' | 'done' | 'failed' | 'undo' | 'undone';
