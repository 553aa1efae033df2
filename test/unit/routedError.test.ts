import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { routedError, RoutedCallError } from '../../src/router/routedError.js';

function serverError(code: string, message: string, fields: Record<string, string> = {}): pg.DatabaseError {
  const error = new pg.DatabaseError(message, message.length, 'error');
  return Object.assign(error, { code, severity: 'ERROR', ...fields });
}

describe('routedError', () => {
  it('names the node and slot, keeps the cause, and says a refused connect is safe to retry', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5433'), { code: 'ECONNREFUSED' });
    const error = routedError(cause, 'n2', 17, 'connect');
    expect(error).toBeInstanceOf(RoutedCallError);
    expect(error.message).toBe('node "n2" (slot 17) is unreachable: connect ECONNREFUSED 127.0.0.1:5433');
    expect(error).toMatchObject({ code: 'RESHARD_NODE_UNREACHABLE', node: 'n2', slot: 17, retryable: true });
    expect(error.cause).toBe(cause);
  });

  it('a connection lost before COMMIT is a transaction ended (retryable); after a statement or COMMIT was sent, the outcome is unknown', () => {
    const lost = new Error('Connection terminated unexpectedly');
    expect(routedError(lost, 'n1', 3, 'before-commit')).toMatchObject({ code: 'RESHARD_TRANSACTION_ENDED', retryable: true });
    expect(routedError(lost, 'n1', 3, 'statement')).toMatchObject({ code: 'RESHARD_OUTCOME_UNKNOWN', retryable: false });
    expect(routedError(lost, 'n1', 3, 'commit')).toMatchObject({ code: 'RESHARD_OUTCOME_UNKNOWN', retryable: false });
    // A COMMIT node-postgres never sent (it knew the connection was broken) committed nothing.
    const neverSent = new Error('Client has encountered a connection error and is not queryable');
    expect(routedError(neverSent, 'n1', 3, 'commit')).toMatchObject({ code: 'RESHARD_TRANSACTION_ENDED', retryable: true });
    // Terminated by reshard (57P01) inside a transaction: not committed.
    expect(routedError(serverError('57P01', 'terminating connection due to administrator command'), 'n1', 3, 'before-commit'))
      .toMatchObject({ code: 'RESHARD_TRANSACTION_ENDED', retryable: true });
  });

  it('a call the node proved it never read (its connections kept ending) is not applied and retryable, whatever the phase', () => {
    const ended = Object.assign(serverError('57P01', 'terminating connection due to administrator command'), { reshardNotApplied: true });
    expect(routedError(ended, 'n1', 3, 'statement')).toMatchObject({ code: 'RESHARD_NODE_UNREACHABLE', retryable: true, node: 'n1', slot: 3 });
    expect(routedError(ended, 'n1', 3, 'statement').message).toMatch(/before the call could commit.*nothing was applied/);
    // Without that proof the same FATAL after a statement was sent leaves the outcome unknown.
    expect(routedError(serverError('57P01', 'terminating connection due to administrator command'), 'n1', 3, 'statement'))
      .toMatchObject({ code: 'RESHARD_OUTCOME_UNKNOWN', retryable: false });
  });

  it('keeps the SQLSTATE and the node\'s fields of the application\'s own errors; only serialization failures and deadlocks are retryable', () => {
    const duplicate = routedError(serverError('23505', 'duplicate key value violates unique constraint "items_pkey"', { constraint: 'items_pkey' }), 'n1', 5, 'statement');
    expect(duplicate).toMatchObject({ code: '23505', retryable: false, node: 'n1', slot: 5 });
    expect((duplicate as unknown as { constraint: string }).constraint).toBe('items_pkey');
    expect(duplicate.message).toBe('node "n1" (slot 5) duplicate key value violates unique constraint "items_pkey"');
    expect(routedError(serverError('40001', 'could not serialize access'), 'n1', 5, 'statement').retryable).toBe(true);
    expect(routedError(serverError('40P01', 'deadlock detected'), 'n1', 5, 'before-commit').retryable).toBe(true);
  });

  it('a node without the route check says how to install it', () => {
    const missing = routedError(serverError('42883', 'function reshard_node.route(integer, bigint) does not exist'), 'n3', 9, 'statement');
    expect(missing.message).toMatch(/^node "n3" \(slot 9\) has no route check .*rebalance that moves a slot to or from it installs them$/);
    expect(missing.retryable).toBe(false);
  });
});
