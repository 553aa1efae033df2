import type pg from 'pg';
import { routeLeaseSeenSql } from '../node/slotState.js';

/**
 * Whether routers take node leases unless told otherwise
 * (`routeLeases: false` sends the route check with every statement).
 */
export const ROUTE_LEASES_DEFAULT = true;

/**
 * The node leases of a router's pooled connections (see the node's
 * `installNodeLease`): a connection that passed one route check on its node
 * and was granted the lease sends its single statements there with no check
 * afterwards, for the slots the router's map says that node serves (calls of
 * frozen slots are held before they get here). Transactions always carry the
 * check: its transaction lock is what a switch waits for.
 *
 * The router's part of the bargain: whenever its map shows one of a node's
 * slots frozen or gone, it tells that node that its connections there follow
 * the new map (`route_lease_seen`), before it acknowledges the change. A
 * connection in use for a call on one of those slots (or for a call that is
 * not routed by slot) is reported only when it returns to the pool, in its
 * own session, after that call: until then the call may still be reaching
 * the slot. Connections on which a lease check was ever sent are reported,
 * whether or not the router saw the grant (a check whose answer was lost may
 * have taken it).
 */
export class NodeLeases {
  /** Connections holding their node's lease: their single statements go without the check. */
  private readonly leased = new Set<pg.ClientBase>();
  /** Connections on which a lease check was sent, by node: they may hold the lease. */
  private readonly mayHold = new Map<pg.ClientBase, string>();
  /** Connections in use, with the slot of the routed call using each (undefined: not a routed call, e.g. eachNode). */
  private readonly inUse = new Map<pg.ClientBase, number | undefined>();
  /** The epoch a busy connection reports in its own session once it is back in the pool. */
  private readonly reportWhenIdle = new Map<pg.ClientBase, number>();

  constructor(readonly enabled: boolean) {}

  /** Follows a node's pool: which connections are in use, and those that left it. */
  follow(pool: pg.Pool): void {
    pool.on('acquire', (client) => this.inUse.set(client, undefined));
    pool.on('release', (error: Error | undefined, client: pg.PoolClient) => {
      this.inUse.delete(client);
      if (error) this.forget(client);
      else this.reportIfDue(client);
    });
    pool.on('remove', (client) => this.forget(client));
  }

  /** `client` serves a routed call on `slot` until it returns to the pool. */
  using(client: pg.ClientBase, slot: number): void {
    this.inUse.set(client, slot);
  }

  holds(client: pg.ClientBase): boolean {
    return this.leased.has(client);
  }

  /** A lease check is about to go out on `client`, a connection to `node`. */
  checking(client: pg.ClientBase, node: string): void {
    if (this.enabled) this.mayHold.set(client, node);
  }

  /** The node's answer to a lease check that passed: whether it granted the lease. */
  granted(client: pg.ClientBase, leased: boolean): void {
    if (leased && this.mayHold.has(client)) this.leased.add(client);
  }

  /**
   * The router's map now shows `changed` (slots that `node` served) frozen or
   * gone, at `epoch`: tells the node so for every connection that may hold
   * its lease, through `pool` (one statement), except those busy with a call
   * that may touch a changed slot, which tell it themselves when they are
   * back in the pool.
   */
  async seen(node: string, pool: pg.Pool, epoch: number, changed: ReadonlySet<number>): Promise<void> {
    const now: number[] = [];
    for (const [client, holderNode] of this.mayHold) {
      if (holderNode !== node) continue;
      const pid = processIdOf(client);
      if (pid === undefined) continue;
      const busyWith = this.inUse.has(client) ? this.inUse.get(client) : null;
      if (busyWith === null || (busyWith !== undefined && !changed.has(busyWith))) now.push(pid);
      else this.reportWhenIdle.set(client, Math.max(epoch, this.reportWhenIdle.get(client) ?? 0));
    }
    if (now.length === 0) return;
    // A failure leaves the node's switch to wait its bound for these sessions, then end them.
    await pool.query(routeLeaseSeenSql(now, epoch)).catch(() => {});
  }

  /**
   * Queued on the connection right as it returns to the pool: pg runs a
   * client's queries in order, so whoever takes it next runs after the report.
   */
  private reportIfDue(client: pg.ClientBase): void {
    const epoch = this.reportWhenIdle.get(client);
    if (epoch === undefined) return;
    this.reportWhenIdle.delete(client);
    const pid = processIdOf(client);
    if (pid !== undefined) void client.query(routeLeaseSeenSql([pid], epoch)).catch(() => {});
  }

  private forget(client: pg.ClientBase): void {
    this.leased.delete(client);
    this.mayHold.delete(client);
    this.inUse.delete(client);
    this.reportWhenIdle.delete(client);
  }
}

function processIdOf(client: pg.ClientBase): number | undefined {
  const pid = (client as unknown as { processID?: number | null }).processID;
  return typeof pid === 'number' ? pid : undefined;
}
