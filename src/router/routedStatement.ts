import pg from 'pg';
import { NODE_LEASE_PREPARED_SQL, ROUTE_CHECK_PREPARED_SQL } from '../node/slotState.js';

/** What the route check needs: the slot and the epoch the call was routed at. */
export interface RouteCheck {
  slot: number;
  epoch: number;
}

/**
 * Which check goes first: `route` (held for the statement's transaction only),
 * `lease` (the same, and it may grant the node lease: see NodeLeases), or
 * `leased` (none: the connection holds its node's lease).
 */
export type RouteCheckKind = 'route' | 'lease' | 'leased';

/**
 * A check sent in front of a statement, as a statement prepared once per
 * connection (parsed and planned once, then only bound and executed with
 * each call), with its parameters for this call.
 */
export interface PreparedCheck {
  name: string;
  text: string;
  values: readonly string[];
}

/** The route checks' prepared statements. */
const CHECK_STATEMENTS: Record<Exclude<RouteCheckKind, 'leased'>, { name: string; text: string }> = {
  route: { name: 'reshard_route', text: ROUTE_CHECK_PREPARED_SQL },
  lease: { name: 'reshard_node_lease', text: NODE_LEASE_PREPARED_SQL },
};

const NO_CHECKS: readonly PreparedCheck[] = [];

/**
 * One statement on a routed connection, always in the extended protocol
 * (Parse/Bind/Describe/Execute/Sync), preceded by the route check unless the
 * connection holds the slot's lease: Bind/Execute of the check (Parse too,
 * the first time on a connection), then the statement, then one Sync. Both
 * run in one implicit transaction in one round trip; if the check raises (the
 * slot is frozen or moved here), the server skips the statement and the call
 * fails with the check's error. The check's own result is not shown.
 *
 * Its error carries `reshardCheckPassed` (the check passed, the statement
 * failed) and `reshardNotApplied: true` when it proves nothing of the call
 * was committed: it was never sent (the connection was already broken, or
 * broke while the statement waited its turn on it), or the node's session
 * was terminated (57P01, a FATAL the node sends in order after everything it
 * queued before) before the statement's own CommandComplete — the case of a
 * pooled connection the node ended while it sat idle or ran the call (a
 * fence ends the node lease holders of a router that did not report the
 * freeze), whether or not its end was read before the call went out. The
 * implicit transaction commits at Sync, after the statement's
 * CommandComplete: a FATAL before it ended the transaction uncommitted. (A
 * crashed server, 57P02, or a broken socket sends nothing in order: no proof.)
 */
export function sendRoutedStatement<R extends pg.QueryResultRow>(client: pg.ClientBase, check: RouteCheck, kind: RouteCheckKind, text: string, values: readonly unknown[],
  done: (error: Error | undefined, result?: pg.QueryResult<R>, checkAnswer?: string | null) => void, tableCheck?: PreparedCheck): void {
  const prepared = kind === 'leased' ? undefined : { ...CHECK_STATEMENTS[kind], values: [String(check.slot), String(check.epoch)] };
  sendCheckedStatement(client, tableCheck === undefined ? prepared : prepared === undefined ? tableCheck : [prepared, tableCheck], text, values, done);
}

/**
 * One statement in the extended protocol, preceded by `check` (if any; or
 * several, in order) in the same implicit transaction and round trip, as
 * sendRoutedStatement describes: a check raises, the statement is skipped.
 * An error also carries `reshardRefusedBy`: the name of the check that
 * raised it (undefined when every check passed, or the error is not the
 * node's).
 */
export function sendCheckedStatement<R extends pg.QueryResultRow>(client: pg.ClientBase, check: PreparedCheck | readonly PreparedCheck[] | undefined, text: string, values: readonly unknown[],
  done: (error: Error | undefined, result?: pg.QueryResult<R>, checkAnswer?: string | null) => void): void {
  const query: CheckedQuery = new CheckedQuery(check, text, values,
    (error: Error | null, result: pg.QueryResult<R>) => {
      if (error) {
        // Only the node's own error names a check: a connection lost during the checks refused nothing.
        const refusedBy = error instanceof pg.DatabaseError ? query.refusedBy : undefined;
        done(Object.assign(error, { reshardCheckPassed: query.checkPassed, reshardRefusedBy: refusedBy, reshardNotApplied: query.provedNotApplied(error) }), undefined, query.checkAnswer);
      } else {
        done(undefined, result, query.checkAnswer);
      }
    });
  client.query(query as unknown as pg.Submittable);
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
// subclass only sends the check first, hides its DataRow/CommandComplete and
// notes whether the node read the statement.
const QueryBase = (pg as unknown as { Query: new (text: string, values: unknown[], callback: unknown) => object }).Query;

class CheckedQuery extends (QueryBase as new (text: string, values: unknown[], callback: unknown) => {
  prepare(connection: Connection): void;
  handleDataRow(message: unknown): void;
  handleCommandComplete(message: unknown, connection: Connection): void;
  handleError(error: unknown, connection: Connection): void;
}) {
  private readonly checks: readonly PreparedCheck[];
  /** How many of the checks ran to completion. */
  private checksAnswered = 0;
  /** The first check's own answer (the first column of its row, as text), if it returned one. */
  checkAnswer: string | null | undefined;
  /** Names of the checks parsed on the connection with this call. */
  private parsedChecks: string[] | undefined;
  /** It went out on its connection (false while it waits its turn, or if it never got one). */
  private sent = false;
  /** The statement's own CommandComplete came: from there its transaction may commit (at Sync). */
  private statementCompleted = false;

  /** The first check ran to completion (its CommandComplete came): a lease check that passed holds the lease. */
  get checkPassed(): boolean {
    return this.checks.length === 0 || this.checksAnswered > 0;
  }

  /** The check that did not complete, when the call failed in the checks. */
  get refusedBy(): string | undefined {
    return this.checks[this.checksAnswered]?.name;
  }

  constructor(check: PreparedCheck | readonly PreparedCheck[] | undefined, text: string, values: readonly unknown[], callback: (error: Error | null, result: never) => void) {
    // pg maps the values into the Bind message; it does not keep or change the array.
    super(text, values as unknown[], callback);
    this.checks = check === undefined ? NO_CHECKS : Array.isArray(check) ? check : [check as PreparedCheck];
  }

  private get checksDone(): boolean {
    return this.checksAnswered >= this.checks.length;
  }

  /** Whether `error` proves nothing of this call was committed (see sendRoutedStatement). */
  provedNotApplied(error: unknown): boolean {
    if (!this.sent) return true;
    return error instanceof pg.DatabaseError && error.code === '57P01' && !this.statementCompleted;
  }

  submit(connection: Connection): null {
    this.sent = true;
    connection.stream.cork?.();
    try {
      for (const check of this.checks) {
        const { name, text } = check;
        if (connection.parsedStatements[name] !== text) {
          // Closing a statement that does not exist is no error: a Parse that failed before leaves none.
          connection.close({ type: 'S', name });
          connection.parse({ name, text });
          connection.parsedStatements[name] = text;
          (this.parsedChecks ??= []).push(name);
        }
        connection.bind({ statement: name, values: [...check.values] });
        connection.execute({});
      }
      // Always the extended protocol (also without parameters): it ends with the one Sync.
      this.prepare(connection);
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  override handleDataRow(message: unknown): void {
    if (this.checksDone) super.handleDataRow(message);
    else if (this.checksAnswered === 0) this.checkAnswer = (message as { fields: (string | null)[] }).fields[0];
  }

  override handleCommandComplete(message: unknown, connection: Connection): void {
    if (!this.checksDone) {
      this.checksAnswered++;
      return;
    }
    this.statementCompleted = true;
    super.handleCommandComplete(message, connection);
  }

  override handleError(error: unknown, connection: Connection): void {
    // A check failed where checks were parsed: whether each Parse took is unknown, so parse them again next time.
    if (!this.checksDone && this.parsedChecks) for (const name of this.parsedChecks) delete connection.parsedStatements[name];
    super.handleError(error, connection);
  }
}
