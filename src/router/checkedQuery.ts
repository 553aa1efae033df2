import pg from 'pg';
import { ROUTE_CHECK_PREPARED_SQL, ROUTE_LEASE_PREPARED_SQL } from '../node/slotState.js';

/** What the route check needs: the slot and the epoch the call was routed at. */
export interface RouteCheck {
  slot: number;
  epoch: number;
}

/**
 * Which check goes first: `route` (held for the statement's transaction only)
 * or `lease` (kept by the session after it passes: see RouteLeases).
 */
export type RouteCheckKind = 'route' | 'lease';

/**
 * The route checks as prepared statements of each connection: parsed and
 * planned once per connection, then only bound and executed with each call.
 */
const CHECK_STATEMENTS: Record<RouteCheckKind, { name: string; text: string }> = {
  route: { name: 'reshard_route', text: ROUTE_CHECK_PREPARED_SQL },
  lease: { name: 'reshard_route_lease', text: ROUTE_LEASE_PREPARED_SQL },
};

/**
 * One statement preceded by the route check, pipelined: Bind/Execute of the
 * check (Parse too, the first time on a connection), then
 * Parse/Bind/Describe/Execute of the statement, then one Sync. Both run in one
 * implicit transaction in one round trip; if the check raises (the slot is
 * frozen or moved here), the server skips the statement and the call fails
 * with the check's error. The check's own result is not shown.
 */
export function checkedQuery<R extends pg.QueryResultRow>(client: pg.ClientBase, check: RouteCheck, text: string, values: readonly unknown[], kind: RouteCheckKind = 'route'): Promise<CheckedResult<R>> {
  return new Promise((resolve, reject) => {
    const query: CheckedQuery = new CheckedQuery(CHECK_STATEMENTS[kind], check, text, values,
      (error: Error | null, result: pg.QueryResult<R>) => (error
        ? reject(Object.assign(error, { reshardCheckPassed: query.checkPassed }))
        : resolve(Object.assign(result, { reshardCheckPassed: true }))));
    client.query(query as unknown as pg.Submittable);
  });
}

/** A checked statement's result; an error of one carries `reshardCheckPassed` too (the check passed, the statement failed). */
export type CheckedResult<R extends pg.QueryResultRow> = pg.QueryResult<R> & { reshardCheckPassed: boolean };

type Connection = {
  parse(message: { text: string; name?: string; types?: unknown[] }): void;
  bind(message: { portal?: string; statement?: string; values?: unknown[] }): void;
  execute(message: { portal?: string; rows?: number }): void;
  close(message: { type: 'S' | 'P'; name?: string }): void;
  parsedStatements: Record<string, string>;
  stream: { cork?(): void; uncork?(): void };
};

// pg's Query is the reference implementation of the message handling; this
// subclass only sends the check first and hides its DataRow/CommandComplete.
const QueryBase = (pg as unknown as { Query: new (text: string, values: unknown[], callback: unknown) => object }).Query;

class CheckedQuery extends (QueryBase as new (text: string, values: unknown[], callback: unknown) => {
  prepare(connection: Connection): void;
  handleDataRow(message: unknown): void;
  handleCommandComplete(message: unknown, connection: Connection): void;
  handleError(error: unknown, connection: Connection): void;
}) {
  private checkAnswered = false;
  private parsedCheck = false;

  /** The check ran to completion (its CommandComplete came): a lease check that passed holds the lease. */
  get checkPassed(): boolean {
    return this.checkAnswered;
  }

  constructor(private readonly checkStatement: { name: string; text: string }, private readonly check: RouteCheck, text: string, values: readonly unknown[], callback: (error: Error | null, result: never) => void) {
    super(text, [...values], callback);
  }

  submit(connection: Connection): null {
    connection.stream.cork?.();
    try {
      const { name, text } = this.checkStatement;
      if (connection.parsedStatements[name] !== text) {
        // Closing a statement that does not exist is no error: a Parse that failed before leaves none.
        connection.close({ type: 'S', name });
        connection.parse({ name, text });
        connection.parsedStatements[name] = text;
        this.parsedCheck = true;
      }
      connection.bind({ statement: name, values: [String(this.check.slot), String(this.check.epoch)] });
      connection.execute({});
      // Always the extended protocol (also without parameters): it ends with the one Sync.
      this.prepare(connection);
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  override handleDataRow(message: unknown): void {
    if (this.checkAnswered) super.handleDataRow(message);
  }

  override handleCommandComplete(message: unknown, connection: Connection): void {
    if (!this.checkAnswered) {
      this.checkAnswered = true;
      return;
    }
    super.handleCommandComplete(message, connection);
  }

  override handleError(error: unknown, connection: Connection): void {
    // The check failed where it was parsed: whether the Parse took is unknown, so parse again next time.
    if (!this.checkAnswered && this.parsedCheck) delete connection.parsedStatements[this.checkStatement.name];
    super.handleError(error, connection);
  }
}
