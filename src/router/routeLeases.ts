import type pg from 'pg';
import { releaseRouteLeasesSql } from '../node/slotState.js';

/**
 * Route leases one pooled connection keeps at most (each is one entry of the
 * node's lock table, whose size is max_locks_per_transaction ×
 * (max_connections + max_prepared_transactions), 64 × 100 on stock settings).
 * With them a routed read costs about what it costs through a plain pool
 * (bench/results/router.json); `routeLeasesPerConnection: 0` sends the check
 * with every statement instead.
 */
// Off by default: the freeze no longer waits for the routers' acknowledgements once the source is fenced, so
// the fence can end an idle lease holder just as its router sends a call on it (an unknown outcome; 3 tests of
// one full run). On again once the fence and the lease release are ordered (README "Route leases").
export const ROUTE_LEASES_PER_CONNECTION_DEFAULT = 0;

/**
 * The route leases of a router's pooled connections: the slots whose route
 * check each connection has passed and still holds at session level on its
 * node (`reshard_node.route_lease`). A call for a leased slot on that
 * connection needs no check: the node's fence and switch cannot commit while
 * the session holds the lease (they wait for it, or end the session).
 *
 * When the router sees a slot frozen, it forgets the slot's leases at once
 * and gives them back right away (queued on the connection: pg runs a
 * client's queries in order), except on a connection in use for a call on
 * that very slot, which gives it back when it returns to the pool (before
 * anything else runs on it): that call may be a transaction relying on the
 * lease. So a long call on another slot does not hold the freeze. A
 * connection the node ended (a lease not given back in time) leaves the pool
 * with its leases.
 */
export class RouteLeases {
  private readonly held = new Map<pg.ClientBase, Set<number>>();
  /** Connections in use, with the slot of the routed call using each (undefined: not a routed call, e.g. eachNode). */
  private readonly inUse = new Map<pg.ClientBase, number | undefined>();
  /** Slots whose leases a connection gives back when it is next idle. */
  private readonly toRelease = new Map<pg.ClientBase, Set<number>>();

  /** `isRevoked(slot)`: the slot is frozen in the router's map, so no lease on it is kept. */
  constructor(private readonly leasesPerConnection: number, private readonly isRevoked: (slot: number) => boolean) {}

  /** Follows a node's pool: which connections are in use, and those that left it. */
  follow(pool: pg.Pool): void {
    pool.on('acquire', (client) => this.inUse.set(client, undefined));
    pool.on('release', (error: Error | undefined, client: pg.PoolClient) => {
      this.inUse.delete(client);
      if (error) this.forget(client);
      else if (this.toRelease.has(client)) void this.flush(client);
    });
    pool.on('remove', (client) => this.forget(client));
  }

  /** `client` serves a routed call on `slot` until it returns to the pool (before the call looks at its leases). */
  using(client: pg.ClientBase, slot: number): void {
    this.inUse.set(client, slot);
  }

  holds(client: pg.ClientBase, slot: number): boolean {
    return this.held.get(client)?.has(slot) ?? false;
  }

  /** Whether `client` may take one more lease (else the call uses the per-statement check). */
  mayLease(client: pg.ClientBase): boolean {
    return this.leasesPerConnection > 0 && (this.held.get(client)?.size ?? 0) < this.leasesPerConnection;
  }

  /** The lease check passed on `client`: kept, unless the slot was frozen meanwhile (then given back). */
  granted(client: pg.ClientBase, slot: number): void {
    if (this.isRevoked(slot)) {
      this.releaseLater(client, slot);
      return;
    }
    let slots = this.held.get(client);
    if (!slots) this.held.set(client, (slots = new Set()));
    slots.add(slot);
  }

  /** The lease check failed in a way that does not prove the lease is not held (not a refusal): given back to be sure. */
  uncertain(client: pg.ClientBase, slot: number): void {
    this.releaseLater(client, slot);
  }

  /**
   * Forgets every lease on `slots` and gives them back (awaited), except on
   * connections in use for a call on one of them: those when they return to
   * the pool.
   */
  async revoke(slots: Iterable<number>): Promise<void> {
    const revoked = new Set(slots);
    if (revoked.size === 0) return;
    const releases: Promise<void>[] = [];
    for (const [client, leased] of this.held) {
      let any = false;
      for (const slot of revoked) {
        if (leased.delete(slot)) {
          any = true;
          this.releaseLater(client, slot);
        }
      }
      if (!any) continue;
      if (!this.inUse.has(client)) releases.push(this.flush(client));
      else {
        const servingSlot = this.inUse.get(client);
        if (servingSlot === undefined || !revoked.has(servingSlot)) releases.push(this.flush(client, 'busy'));
      }
    }
    await Promise.all(releases);
  }

  private releaseLater(client: pg.ClientBase, slot: number): void {
    let slots = this.toRelease.get(client);
    if (!slots) this.toRelease.set(client, (slots = new Set()));
    slots.add(slot);
  }

  /**
   * Queues the release on the connection: pg runs a client's queries in
   * order, so whoever takes the connection next runs after it. On a busy
   * connection (its transaction failed, say) a failed release is tried again
   * when the connection returns to the pool. On an idle one it failed because
   * the session ended (the fence ends idle lease holders): the pool drops such
   * a connection when it reads the end. It is not ended here: a pooled
   * connection ended behind the pool's back stays in the pool and fails the
   * next call.
   */
  private async flush(client: pg.ClientBase, when: 'idle' | 'busy' = 'idle'): Promise<void> {
    const slots = this.toRelease.get(client);
    if (!slots || slots.size === 0) return;
    this.toRelease.delete(client);
    try {
      await client.query(releaseRouteLeasesSql([...slots]));
    } catch {
      if (when === 'busy' && this.inUse.has(client)) {
        for (const slot of slots) this.releaseLater(client, slot);
        return;
      }
      this.forget(client);
    }
  }

  private forget(client: pg.ClientBase): void {
    this.held.delete(client);
    this.toRelease.delete(client);
    this.inUse.delete(client);
  }
}
