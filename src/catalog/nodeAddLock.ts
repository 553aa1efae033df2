import type pg from 'pg';
import { ReshardError } from '../core/errors.js';

/** Longest a `node add` waits for another one to finish. */
const NODE_ADD_LOCK_TIMEOUT_MS = 30_000;

/** Transaction lock serialising `node add` runs against one catalog. */
const NODE_ADD_LOCK_KEY = 0x7273_6e61; // "rsna"

/**
 * Takes the `node add` lock for the caller's open transaction, waiting at most
 * NODE_ADD_LOCK_TIMEOUT_MS for another add to finish (a conflict error past it).
 */
export async function lockNodeAdds(catalog: pg.ClientBase): Promise<void> {
  await catalog.query(`SET LOCAL lock_timeout = '${NODE_ADD_LOCK_TIMEOUT_MS}ms'`);
  try {
    await catalog.query('SELECT pg_advisory_xact_lock($1)', [NODE_ADD_LOCK_KEY]);
  } catch (error) {
    if ((error as { code?: string }).code !== '55P03') throw error;
    throw new ReshardError('conflict', `another \`reshard node add\` has held the catalog for ${NODE_ADD_LOCK_TIMEOUT_MS / 1000} s`, 'retry when it has finished');
  }
}
