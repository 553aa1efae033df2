/**
 * What a routed call's failure tells the application: which node and slot,
 * whether the same call may simply be retried, and the original error as
 * `cause`. `code` is reshard's code for failures of the route itself, or the
 * PostgreSQL SQLSTATE (e.g. '23505') when the node answered the
 * application's own SQL with an error — so `error.code` checks keep working.
 */
export type RouterErrorCode =
  /** The node could not be reached, or its connections ended before it read the call; nothing was applied. Retry (the node may be down: alert). */
  | 'RESHARD_NODE_UNREACHABLE'
  /** The connection was lost after the call was sent: it may or may not have been applied. */
  | 'RESHARD_OUTCOME_UNKNOWN'
  /** The transaction was ended before COMMIT (its node restarted, or reshard ended it because it held a moving slot): nothing was committed. */
  | 'RESHARD_TRANSACTION_ENDED'
  /** The slot stayed frozen (moving) longer than the router's holdTimeoutMs: nothing was applied. */
  | 'RESHARD_SLOT_FROZEN'
  /** The nodes kept redirecting the slot, or named a node this router does not know yet: nothing was applied. */
  | 'RESHARD_ROUTE_UNRESOLVED'
  /** The router was closed. */
  | 'RESHARD_ROUTER_CLOSED';

/** SQLSTATEs of the application's own SQL after which running the same call again is sound. */
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

export class RoutedCallError extends Error {
  override name = 'RoutedCallError';
  /** reshard's code, or the node's SQLSTATE for an error of the application's SQL. */
  readonly code: RouterErrorCode | string;
  readonly node: string | undefined;
  readonly slot: number;
  /** True when the call was certainly not applied (or is safe to repeat): run it again. */
  readonly retryable: boolean;

  constructor(fields: { code: RouterErrorCode | string; node: string | undefined; slot: number; retryable: boolean; message: string; cause?: unknown }) {
    super(`${fields.node === undefined ? '' : `node "${fields.node}" `}(slot ${fields.slot}) ${fields.message}`, { cause: fields.cause });
    this.code = fields.code;
    this.node = fields.node;
    this.slot = fields.slot;
    this.retryable = fields.retryable;
    // The node's own fields (detail, constraint, table …) stay readable on the error.
    if (fields.cause && typeof fields.cause === 'object' && 'severity' in fields.cause) {
      for (const [key, value] of Object.entries(fields.cause)) {
        if (!(key in this) && value !== undefined) Object.defineProperty(this, key, { value, enumerable: true });
      }
    }
  }
}

/** Where a failure happened in a routed call: it decides whether the work may have been applied. */
export type CallPhase = 'connect' | 'before-commit' | 'commit' | 'statement';

/** The application-facing error for a failure at `phase` of a call routed to `node` for `slot`. */
export function routedError(error: unknown, node: string | undefined, slot: number, phase: CallPhase): RoutedCallError {
  if (error instanceof RoutedCallError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const sqlstate = (error as { code?: unknown }).code;
  const fromServer = error !== null && typeof error === 'object' && 'severity' in error;
  if ((error as { reshardRolledBack?: boolean }).reshardRolledBack) {
    return new RoutedCallError({ code: '25P02', node, slot, retryable: false, message: text, cause: error });
  }
  if (phase === 'connect') {
    return new RoutedCallError({ code: 'RESHARD_NODE_UNREACHABLE', node, slot, retryable: true, message: `is unreachable: ${text}`, cause: error });
  }
  if ((error as { reshardNotApplied?: boolean }).reshardNotApplied === true) {
    return new RoutedCallError({ code: 'RESHARD_NODE_UNREACHABLE', node, slot, retryable: true, message: `ended the session before the call could commit (every try), nothing was applied: ${text}`, cause: error });
  }
  // 57P01: terminated (by reshard ending a transaction that held a moving slot, or a shutdown); 57P02/57P03: crash, starting up.
  const ended = typeof sqlstate === 'string' && /^57P0[123]$/.test(sqlstate);
  // node-postgres refuses to send on a connection it already knows is broken: that statement never left.
  const neverSent = !fromServer && /is not queryable/.test(text);
  if (!fromServer || ended) {
    if (phase === 'before-commit' || (phase === 'commit' && neverSent)) {
      return new RoutedCallError({ code: 'RESHARD_TRANSACTION_ENDED', node, slot, retryable: true, message: `ended the transaction before COMMIT, nothing was committed: ${text}`, cause: error });
    }
    return new RoutedCallError({ code: 'RESHARD_OUTCOME_UNKNOWN', node, slot, retryable: false, message: `lost the connection after the call was sent; it may or may not have been applied: ${text}`, cause: error });
  }
  if ((sqlstate === '42883' || sqlstate === '3F000') && /reshard_node/.test(text)) {
    return new RoutedCallError({ code: String(sqlstate), node, slot, retryable: false, cause: error,
      message: `has no route check (${text}): its reshard helpers predate this version; \`reshard table create\` or any rebalance that moves a slot to or from it installs them` });
  }
  return new RoutedCallError({ code: String(sqlstate), node, slot, retryable: RETRYABLE_SQLSTATES.has(String(sqlstate)), message: text, cause: error });
}
