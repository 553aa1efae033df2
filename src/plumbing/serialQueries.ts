import type pg from 'pg';
import type { Queryable } from './queryable.js';

/**
 * One connection shared by concurrent callers (the coordinator's checkpoints
 * of parallel batches and its progress recorder): queries run one after the
 * other, as node-postgres will require (overlapping queries on one client
 * are deprecated in pg 8 and removed in 9).
 */
export function serialQueries(client: Queryable): Queryable {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
      const run = tail.then(() => client.query<R>(text, values));
      tail = run.catch(() => {});
      return run;
    },
  };
}
