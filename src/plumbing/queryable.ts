import type pg from 'pg';

/** Anything that runs a parameterised query: a pg.Client, pg.Pool or pooled client. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}
