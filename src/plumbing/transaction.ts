import type { Queryable } from './queryable.js';

/**
 * Transaction brackets on one session (a node's or the catalog's), for
 * operations whose commits are ordered across several sessions (a node add
 * commits the catalog first, then the node; a table create commits every node
 * only when all succeeded). What runs inside is catalog/ and node/ operations.
 */
export async function beginTransaction(session: Queryable): Promise<void> {
  await session.query('BEGIN');
}

export async function commitTransaction(session: Queryable): Promise<void> {
  await session.query('COMMIT');
}

/** Rolls back, ignoring a failure (a session that is already gone has nothing to roll back). */
export async function rollbackQuietly(session: Queryable | undefined): Promise<void> {
  await session?.query('ROLLBACK').catch(() => {});
}
