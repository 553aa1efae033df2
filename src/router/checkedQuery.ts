import pg from 'pg';
import { ROUTE_CHECK_PREPARED_SQL } from '../node/slotState.js';

/** What the route check needs: the slot and the epoch the call was routed at. */
export interface RouteCheck {
  slot: number;
  epoch: number;
}

/**
 * The route check as a prepared statement of each connection: parsed and
 * planned once per connection, then only bound and executed with each call.
 */
const ROUTE_STATEMENT = 'reshard_route';

/**
 * One statement preceded by the route check, pipelined: Bind/Execute of the
 * check (Parse too, the first time on a connection), then
 * Parse/Bind/Describe/Execute of the statement, then one Sync. Both run in one
 * implicit transaction in one round trip; if the check raises (the slot is
 * frozen or moved here), the server skips the statement and the call fails
 * with the check's error. The check's own result is not shown.
 */
export function checkedQuery<R extends pg.QueryResultRow>(client: pg.ClientBase, check: RouteCheck, text: string, values: readonly unknown[]): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const query = new CheckedQuery(ROUTE_CHECK_PREPARED_SQL, check, text, values,
      (error: Error | null, result: pg.QueryResult<R>) => (error ? reject(error) : resolve(result)));
    client.query(query as unknown as pg.Submittable);
  });
}

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

  constructor(private readonly checkText: string, private readonly check: RouteCheck, text: string, values: readonly unknown[], callback: (error: Error | null, result: never) => void) {
    super(text, [...values], callback);
  }

  submit(connection: Connection): null {
    connection.stream.cork?.();
    try {
      if (connection.parsedStatements[ROUTE_STATEMENT] !== this.checkText) {
        // Closing a statement that does not exist is no error: a Parse that failed before leaves none.
        connection.close({ type: 'S', name: ROUTE_STATEMENT });
        connection.parse({ name: ROUTE_STATEMENT, text: this.checkText });
        connection.parsedStatements[ROUTE_STATEMENT] = this.checkText;
        this.parsedCheck = true;
      }
      connection.bind({ statement: ROUTE_STATEMENT, values: [String(this.check.slot), String(this.check.epoch)] });
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
    if (!this.checkAnswered && this.parsedCheck) delete connection.parsedStatements[ROUTE_STATEMENT];
    super.handleError(error, connection);
  }
}
