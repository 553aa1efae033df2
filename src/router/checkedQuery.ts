import pg from 'pg';

/**
 * One statement preceded by the route check, pipelined: Parse/Bind/Execute of
 * `check`, then Parse/Bind/Describe/Execute of the statement, then one Sync.
 * Both run in one implicit transaction in one round trip; if the check raises
 * (the slot is frozen or moved here), the server skips the statement and the
 * call fails with the check's error. The check's own result is not shown.
 */
export function checkedQuery<R extends pg.QueryResultRow>(client: pg.ClientBase, check: string, text: string, values: readonly unknown[]): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const query = new CheckedQuery(check, text, values, (error: Error | null, result: pg.QueryResult<R>) => (error ? reject(error) : resolve(result)));
    client.query(query as unknown as pg.Submittable);
  });
}

type Connection = {
  parse(message: { text: string; name?: string; types?: unknown[] }): void;
  bind(message: { portal?: string; statement?: string; values?: unknown[] }): void;
  execute(message: { portal?: string; rows?: number }): void;
  stream: { cork?(): void; uncork?(): void };
};

// pg's Query is the reference implementation of the message handling; this
// subclass only sends the check first and hides its DataRow/CommandComplete.
const QueryBase = (pg as unknown as { Query: new (text: string, values: unknown[], callback: unknown) => object }).Query;

class CheckedQuery extends (QueryBase as new (text: string, values: unknown[], callback: unknown) => {
  prepare(connection: Connection): void;
  handleDataRow(message: unknown): void;
  handleCommandComplete(message: unknown, connection: Connection): void;
}) {
  private checkAnswered = false;

  constructor(private readonly check: string, text: string, values: readonly unknown[], callback: (error: Error | null, result: never) => void) {
    super(text, [...values], callback);
  }

  submit(connection: Connection): null {
    connection.stream.cork?.();
    try {
      connection.parse({ text: this.check });
      connection.bind({});
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
}
