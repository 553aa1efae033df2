import type pg from 'pg';

/**
 * Counts the sequential round trips of a batch's sessions (source, target,
 * catalog): the unit a distant node multiplies, so a freeze's count says what
 * its pause becomes at a given round trip. A query that starts while none of
 * the metered sessions has one in flight begins a round trip; one that starts
 * while another session's query is in flight overlaps it (both sides read at
 * once) and shares it; one that starts while its own session is busy queues
 * behind it (node-postgres runs a session's queries one after the other) and
 * counts. Streams (COPY) and callback queries are not counted.
 */
export class RoundTripMeter {
  /** Round trips since the meter was made. */
  count = 0;
  private inFlight = 0;
  private readonly busy = new WeakMap<object, number>();

  /** `client` itself, its queries counted (the same proxy for every use: listeners and identities stay one). */
  meter<C extends pg.ClientBase>(client: C): C {
    const query = (...args: unknown[]): unknown => {
      const returned = (client.query as (...a: unknown[]) => unknown).apply(client, args);
      if (!isPromise(returned)) return returned;
      const busyBefore = this.busy.get(client) ?? 0;
      if (this.inFlight === 0 || busyBefore > 0) this.count++;
      this.inFlight++;
      this.busy.set(client, busyBefore + 1);
      const settle = (): void => {
        this.inFlight--;
        this.busy.set(client, (this.busy.get(client) ?? 1) - 1);
      };
      returned.then(settle, settle);
      return returned;
    };
    return new Proxy(client, {
      get(target, property) {
        if (property === 'query') return query;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }
}

function isPromise(value: unknown): value is Promise<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function' && value instanceof Promise;
}
