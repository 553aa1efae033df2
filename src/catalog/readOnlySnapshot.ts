import type pg from 'pg';

/**
 * Runs `work`'s reads on `catalog` in one REPEATABLE READ READ ONLY
 * transaction, so that what they read agrees (one snapshot of the catalog).
 */
export async function inReadOnlySnapshot<T>(catalog: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await catalog.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const result = await work();
    await catalog.query('COMMIT');
    return result;
  } catch (error) {
    await catalog.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
