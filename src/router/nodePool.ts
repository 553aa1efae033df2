import pg from 'pg';

/**
 * A router's pool of connections to one node. Its waits are bounded without
 * a timer per call: pg-pool arms one on every checkout when the pool has a
 * `connectionTimeoutMillis`, even when an idle connection is at hand. Here a
 * new connection's connect is bounded by the client itself, and a checkout
 * that may have to wait for a busy pool goes through `checkoutWithin`.
 */
export function openNodePool(config: pg.ClientConfig, size: number): pg.Pool {
  const { connectionTimeoutMillis, ...rest } = config;
  class BoundedClient extends pg.Client {
    constructor(options: pg.ClientConfig = {}) {
      super({ ...options, ...(connectionTimeoutMillis === undefined ? {} : { connectionTimeoutMillis }) });
    }
  }
  return new pg.Pool({ ...rest, max: size, idleTimeoutMillis: POOL_IDLE_MS, Client: BoundedClient });
}

/**
 * How long a router keeps an idle connection open. pg-pool's default (10 s)
 * closes what a burst opened (held calls released by a switch, a busy minute)
 * and the next burst opens them again, a new server process each: a call that
 * waits for one pays the connect (26 ms on the 2-core VM we measure on, and
 * as much of the server's CPU). Five minutes, as connection poolers keep
 * theirs: the pool holds at most its size per node anyway.
 */
export const POOL_IDLE_MS = 300_000;

/** A checkout from `pool` needs no wait for a busy connection: one is idle and nobody queues, or the pool may open one more. */
export function checksOutAtOnce(pool: pg.Pool, size: number): boolean {
  return pool.waitingCount === 0 && (pool.idleCount > 0 || pool.totalCount < size);
}

/** A connection from `pool` within `timeoutMs` (else the error pg-pool gives for its own timeout). */
export function checkoutWithin(pool: pg.Pool, timeoutMs: number): Promise<pg.PoolClient> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new Error(`timeout exceeded when trying to connect (no pooled connection became free within ${timeoutMs} ms)`));
    }, timeoutMs);
    pool.connect((error: Error | undefined, client: pg.PoolClient | undefined, release: (broken?: Error) => void) => {
      clearTimeout(timer);
      // Too late for the call that asked: back to the pool unused.
      if (timedOut) {
        if (client) release();
        return;
      }
      if (error || !client) reject(error ?? new Error('the pool gave no connection'));
      else resolve(client);
    });
  });
}
