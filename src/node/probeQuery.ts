import type { Queryable } from '../plumbing/queryable.js';

/**
 * One probe of a node's responsiveness: the round trip of the smallest query
 * a client can send (`SELECT 1`: parse, plan, execute, reply). A copy that
 * takes the node's CPU or disk shows in it as it shows in the application's
 * calls; where no router reports a node's latency, the latency guard measures
 * it with this, against the same probe before the work began.
 */
export async function probeQueryMs(db: Queryable): Promise<number> {
  const startedMs = performance.now();
  await db.query('SELECT 1');
  return performance.now() - startedMs;
}
