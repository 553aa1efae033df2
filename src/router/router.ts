import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { registerRouter, renewRouterLease, unregisterRouter } from '../catalog/routers.js';
import { colocationKeyTypes, listenForSlotMapChanges, readRouterMap } from '../catalog/routerMapReads.js';
import { referenceHolders } from '../catalog/referenceTables.js';
import { parseSlotMapChange, type SlotMapChange } from '../catalog/slotMapChange.js';
import { assert } from '../core/assert.js';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { errorFields, log } from '../plumbing/log.js';
import type { ShardKeyType, ShardKeyValue } from '../core/hash.js';
import { slotLookup, slotOfKeyByLookup, slotOfValueByLookup, type SlotLookup } from '../core/slotMap.js';
import { connectTo, negotiatedClientConfig, unreachableError } from '../plumbing/connectTo.js';
import { CoalescedRuns } from '../plumbing/coalescedRuns.js';
import { parseConnectionHere } from '../plumbing/conninfoSources.js';
import { FENCE_SQLSTATE, MOVED_SQLSTATE } from '../node/nodeHelpers.js';
import { NOT_HOLDER_SQLSTATE } from '../node/referenceTable.js';
import { sendRoutedStatement, type PreparedCheck, type RouteCheckKind } from './routedStatement.js';
import { nodeLeaseSql, routeCheckSql } from '../node/slotState.js';
import { NodeLeases, ROUTE_LEASES_DEFAULT } from './routeLeases.js';
import { routedError, RoutedCallError, type CallPhase } from './routedError.js';
import { SlotGate } from './slotGate.js';
import { SlotLoadReporter } from './slotLoadReporter.js';
import { checkoutWithin, checksOutAtOnce, openNodePool } from './nodePool.js';

const routerLogger = log('router');

export interface RouterOptions {
  /**
   * The catalog database: settings, a postgres:// URL or a key=value
   * connection string (completed by PGSERVICE and the PG* variables, as libpq would).
   */
  catalog: ConnectionSettings | string;
  /** Node passwords by node name (else PGPASSWORD / ~/.pgpass). */
  passwords?: (nodeName: string) => string | undefined;
  /** Shown in the catalog's router list. */
  name?: string;
  /** The key types of the colocation group this router serves; read from the catalog when absent. */
  keyTypes?: ShardKeyType[];
  /**
   * How long the router's registration in the catalog lives without renewal. It
   * only tells a freeze which routers to wait for (briefly); the router keeps
   * serving from its cached map however long the catalog is away.
   */
  leaseMs?: number;
  /** Longest a call waits for a frozen slot before failing with a retryable error. */
  holdTimeoutMs?: number;
  /** Connections per node. */
  poolSizePerNode?: number;
  /**
   * Node leases (default true): a pooled connection that passed one route
   * check on its node sends its single statements there with no check
   * afterwards (one lock table entry per connection; see README "Route
   * leases"). false: every statement carries the route check.
   */
  routeLeases?: boolean;
  /** Before `routeLeases`: 0 turns leases off, any other number leaves them on. */
  routeLeasesPerConnection?: number;
  /** How often the router sends its per-slot load (calls, rows written, p50/p99) to the catalog; 0: never. */
  loadReportMs?: number;
}

/** A routed call's key: one value, or one per shard key column. */
export type RoutingKey = ShardKeyValue | readonly ShardKeyValue[];

interface RouterNode {
  name: string;
  connection: ConnectionSettings;
}

interface MapSnapshot {
  epoch: number;
  /** By slot id; undefined where no slot has the id (after splits). */
  owners: (string | undefined)[];
  /** A key's slot under this map (split slots mix moduli). */
  lookup: SlotLookup;
  frozen: number[];
  nodes: Map<string, RouterNode>;
}

/** Why an attempt was refused without being applied: slot moved (RSM02), frozen (RSM01), no partition for the row, or the node ended the session before the call could commit. */
type Refusal = 'moved' | 'frozen' | 'not-applied' | 'session-ended';

/** A call's refusals so far, across attempts. */
interface RefusalTally {
  redirects: number;
  notApplied: number;
  last: unknown;
}

/** Where a call was sent: a result or an error carries it as `reshardRoute`. */
export interface CallRoute {
  slot: number;
  owner: string;
  epoch: number;
}

export const ROUTER_LEASE_MS_DEFAULT = 5_000;
export const ROUTER_HOLD_TIMEOUT_MS_DEFAULT = 10_000;
/** Longest a resync waits for the nodes to hear that its connections follow the new map (NodeLeases.seen) before acknowledging. */
const LEASE_REPORT_WAIT_MS = 250;
/** Redirects (RSM02) one call follows before it gives up: a slot moves at most a few times in one call's life. */
const REDIRECTS_MAX = 4;

/**
 * The application-side client. It computes a key's slot locally (the same
 * hash as PostgreSQL), caches the slot map and follows it (LISTEN on the
 * catalog), and sends every routed call with the route check
 * `reshard_node.route(slot, epoch)` in the same round trip. The node is the
 * last word: it refuses work for a slot that is frozen there (RSM01: the call
 * is held and retried) or has left it (RSM02: the call follows the redirect to
 * the owner the node names, without the catalog). So the catalog is off the
 * data path: through a catalog outage the router serves from its cached map,
 * and catches up when the catalog returns.
 */
export class Router {
  readonly id = randomUUID();
  private readonly gate = new SlotGate();
  private readonly leases: NodeLeases;
  private readonly load: SlotLoadReporter;
  /** One pool per node, made on first use (its TLS setting may need a first connection to learn). */
  private readonly pools = new Map<string, Promise<pg.Pool>>();
  /** The pools of `pools` that are open, for use without awaiting. */
  private readonly openPools = new Map<string, pg.Pool>();
  /** How long a call may wait for a connection of each open pool (its node's connect timeout). */
  private readonly checkoutTimeoutMs = new Map<pg.Pool, number>();
  private readonly catalog: ConnectionSettings;
  /** The catalog session of the router's reads, acknowledgements and load reports. */
  private catalogSession: pg.Client | undefined;
  /** A catalog session that only listens (see connectCatalog). */
  private notifier: pg.Client | undefined;
  private snapshot: MapSnapshot | undefined;
  /** Owners learnt from nodes' redirects, newer than the cached map: slot → owner at epoch. */
  private readonly redirects = new Map<number, { owner: string; epoch: number }>();
  private catalogReachable = false;
  private renewTimer: NodeJS.Timeout | undefined;
  /** The map lane: read and apply the newest map (see resync). */
  private readonly syncs = new CoalescedRuns(() => this.syncOnce(), () => this.closed, () => this.scheduleRenewal());
  /** The acknowledgement lane (see acknowledge). */
  private readonly acknowledgements = new CoalescedRuns(() => this.acknowledgeOnce(), () => this.closed);
  /** The last map acknowledged: the next acknowledgement reports the slots that left nodes since. */
  private acknowledged: MapSnapshot | undefined;
  private registered = false;
  private closed = false;
  private keyTypes: ShardKeyType[] = [];
  /** 'schema.table' → holder node of each reference table, read with the slot map. */
  private referenceHolders = new Map<string, string>();
  private referenceReads = 0;
  private readonly leaseMs: number;
  private readonly holdTimeoutMs: number;
  private readonly name: string;
  private readonly poolSize: number;

  private constructor(private readonly options: RouterOptions) {
    this.leaseMs = positiveMs(options.leaseMs, 'leaseMs', ROUTER_LEASE_MS_DEFAULT);
    this.holdTimeoutMs = positiveMs(options.holdTimeoutMs, 'holdTimeoutMs', ROUTER_HOLD_TIMEOUT_MS_DEFAULT);
    this.name = options.name ?? `${hostname()}:${process.pid}`;
    this.poolSize = options.poolSizePerNode ?? 4;
    this.catalog = typeof options.catalog === 'string' ? parseConnectionHere(options.catalog, 'the router\'s catalog option') : options.catalog;
    const leasesPerConnection = options.routeLeasesPerConnection;
    if (leasesPerConnection !== undefined && (!Number.isSafeInteger(leasesPerConnection) || leasesPerConnection < 0)) {
      throw new ReshardError('bad_input', `routeLeasesPerConnection must be a whole number ≥ 0, got ${String(leasesPerConnection)}`, 'pass routeLeases: true or false instead');
    }
    this.leases = new NodeLeases(options.routeLeases ?? (leasesPerConnection === undefined ? ROUTE_LEASES_DEFAULT : leasesPerConnection > 0));
    this.load = new SlotLoadReporter(this.id, () => this.catalogSession, options.loadReportMs);
  }

  /** Connects to the catalog, loads the slot map, registers and starts following changes. */
  static async connect(options: RouterOptions): Promise<Router> {
    const router = new Router(options);
    try {
      await router.start();
    } catch (error) {
      // Nothing may linger after a failed connect (an open LISTEN session keeps the process alive).
      await router.close();
      if ((error as { code?: string }).code === '42P01') {
        throw new ReshardError('precondition', 'the catalog database has no reshard schema', 'run `reshard init` against it first, or point the router at the right database');
      }
      throw error;
    }
    return router;
  }

  get epoch(): number {
    return this.snapshot?.epoch ?? 0;
  }

  /** The node this router would send work for `slot` to now, and whether it holds the slot's calls. */
  routeOf(slot: number): { owner: string; frozen: boolean; epoch: number } {
    const route = this.currentRoute(slot);
    return { owner: route.owner, frozen: this.gate.isFrozen(slot), epoch: route.epoch };
  }

  slotOf(key: RoutingKey): number {
    const snapshot = this.requireSnapshot();
    // One column, one value: the same slot without an array per call.
    if (!Array.isArray(key) && this.keyTypes.length === 1) return slotOfValueByLookup(snapshot.lookup, this.keyTypes[0]!, key as ShardKeyValue);
    const values = Array.isArray(key) ? key : [key as ShardKeyValue];
    return slotOfKeyByLookup(snapshot.lookup, this.keyTypes, values);
  }

  /**
   * Runs one statement on the node that owns the key's slot: with the route
   * check in the same round trip, or alone on a connection that holds its
   * node's lease (see NodeLeases). `tableCheck`: a check of the node's own
   * (AdoptingTable's adopted-table check) sent in front of the statement in
   * the same round trip, after the route check, on leased connections too.
   */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(key: RoutingKey, sql: string, params: readonly unknown[] = [], tableCheck?: PreparedCheck): Promise<pg.QueryResult<R>> {
    const startedMs = performance.now();
    let slot: number;
    try {
      slot = this.slotOf(key);
      this.assertOpen(slot);
    } catch (error) {
      return Promise.reject(error);
    }
    const route = this.currentRoute(slot);
    const pool = this.openPools.get(route.owner);
    // The common case on callbacks, one promise: an open pool with a connection at hand, the slot not frozen here.
    if (pool === undefined || !checksOutAtOnce(pool, this.poolSize) || !this.gate.tryEnter(slot)) return this.routed(key, slot, this.statementWork<R>(sql, params, tableCheck), undefined, startedMs);
    return new Promise((resolve, reject) => {
      pool.connect((connectError: Error | undefined, client: pg.PoolClient | undefined, release: (broken?: Error) => void) => {
        if (connectError || !client) {
          this.gate.leave(slot);
          reject(withRoute(routedError(connectError, route.owner, slot, 'connect'), route));
          return;
        }
        this.leases.using(client, slot);
        this.statement<R>(client, route, sql, params, (error, result) => {
          if (!error) {
            release();
            this.gate.leave(slot);
            (result as { reshardRoute?: CallRoute }).reshardRoute = route;
            this.load.meter.record(slot, performance.now() - startedMs, result);
            resolve(result!);
            return;
          }
          const tally: RefusalTally = { redirects: 0, notApplied: 0, last: undefined };
          const failure = this.failureOf(error, route, tally);
          release(failure.broken);
          this.gate.leave(slot);
          if (failure.thrown) reject(failure.thrown);
          else resolve(this.routed(key, slot, this.statementWork<R>(sql, params, tableCheck), { refusal: failure.refusal!, tally, route }, startedMs));
        }, tableCheck);
      });
    });
  }

  /** query()'s statement as the routed loop's work. */
  private statementWork<R extends pg.QueryResultRow>(sql: string, params: readonly unknown[], tableCheck?: PreparedCheck): (client: pg.PoolClient, route: CallRoute) => Promise<pg.QueryResult<R>> {
    return (client, route) => new Promise((resolve, reject) => {
      this.statement<R>(client, route, sql, params, (error, result) => (error ? reject(error) : resolve(result!)), tableCheck);
    });
  }

  /** query()'s statement on `client`: checked, leased or taking the lease (see checkKind), with the lease's bookkeeping. */
  private statement<R extends pg.QueryResultRow>(client: pg.PoolClient, route: CallRoute, sql: string, params: readonly unknown[], done: (error: Error | undefined, result?: pg.QueryResult<R>) => void,
    tableCheck?: PreparedCheck): void {
    const kind = this.checkKind(client, route);
    if (kind === 'lease') this.leases.checking(client, route.owner);
    sendRoutedStatement<R>(client, route, kind, sql, params, (error, result, checkAnswer) => {
      if (kind === 'lease' && (!error || (error as { reshardCheckPassed?: boolean }).reshardCheckPassed === true)) this.leases.granted(client, checkAnswer === 't');
      if (error) Object.assign(error, { reshardPhase: 'statement' satisfies CallPhase });
      done(error, result);
    }, tableCheck);
  }

  /**
   * Runs `work` in one transaction on the node that owns the key's slot. The
   * route check is sent with BEGIN and holds for the whole transaction: a
   * switch cannot happen under it. `work` may run again (after a rollback)
   * when the node refused the route; nothing of a refused attempt is committed.
   */
  async transaction<T>(key: RoutingKey, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.routed(key, this.slotOf(key), async (client, route) => {
      let phase: CallPhase = 'before-commit';
      try {
        // Always checked (a lease serves single statements only): the check's transaction lock is what the switch waits for.
        const takeLease = this.leases.enabled && !this.leases.holds(client);
        let begun: pg.QueryResult[];
        try {
          if (takeLease) this.leases.checking(client, route.owner);
          begun = await client.query(`BEGIN; ${takeLease ? nodeLeaseSql(route.slot, route.epoch) : routeCheckSql(route.slot, route.epoch)}`) as unknown as pg.QueryResult[];
        } catch (error) {
          // `work` has not run and BEGIN commits nothing: a connection that ended here (the node ended
          // an idle pooled session, say) changed nothing, and the call goes on another connection.
          throw Object.assign(asError(error), { reshardNotApplied: connectionEnded(error) });
        }
        if (takeLease) this.leases.granted(client, (begun[1]?.rows[0] as { leased?: boolean } | undefined)?.leased === true);
        const result = await work(client);
        phase = 'commit';
        const committed = await client.query('COMMIT');
        // COMMIT of a transaction that failed (an error `work` caught) answers ROLLBACK, not an error.
        if (committed.command !== 'COMMIT') {
          throw Object.assign(new Error('the transaction had failed inside (an error that work caught) and COMMIT rolled it back; nothing was committed'), { reshardRolledBack: true });
        }
        return result;
      } catch (error) {
        if (phase !== 'commit') await client.query('ROLLBACK').catch(() => {});
        throw Object.assign(asError(error), { reshardPhase: phase });
      }
    });
  }

  /**
   * Opens up to `connectionsPerNode` connections (at most the pool's size)
   * to every node that owns slots, taking only connections free at once, and
   * gives them back idle: calls released together (an adoption's switch,
   * `AdoptingTable`) then find them open instead of each opening one (a
   * connection costs tens of ms on a loaded server). Repeated, it keeps them
   * from idling out. A node that cannot be reached is left to the calls.
   * With `statement`, each of those connections also runs it as a call
   * routed to a slot its node owns (so it takes its node's lease, as a first
   * call would), behind `tableCheck` if given: the first statements of a
   * session (the lease check, the table check, a table's relcache) are then
   * paid here, not by the released calls.
   */
  async warmPools(connectionsPerNode = this.poolSize, statement?: string, tableCheck?: PreparedCheck): Promise<void> {
    this.assertOpen(-1);
    const owners = [...new Set(this.requireSnapshot().owners.filter((owner) => owner !== undefined))];
    await Promise.all(owners.map(async (name) => {
      const pool = await this.pool(name).catch(() => undefined);
      if (!pool) return;
      const freeAtOnce = pool.idleCount + Math.max(0, this.poolSize - pool.totalCount);
      const wanted = Math.min(connectionsPerNode, this.poolSize, freeAtOnce);
      const clients = await Promise.all(Array.from({ length: wanted }, () => pool.connect().catch(() => undefined)));
      const slot = statement === undefined ? -1 : this.requireSnapshot().owners.findIndex((owner, at) => owner === name && !this.gate.isFrozen(at));
      await Promise.all(clients.map(async (client) => {
        if (!client) return;
        if (slot < 0) {
          client.release();
          return;
        }
        this.leases.using(client, slot);
        const route = this.currentRoute(slot);
        const error = await new Promise<Error | undefined>((resolve) => this.statement(client, route, statement!, [], (failed) => resolve(failed), tableCheck));
        client.release(error && connectionEnded(error) ? error : undefined);
      }));
    }));
  }

  /** Cross-slot work, made explicit: `work` once on every node that owns slots (no route check: it reads what each node holds). */
  async eachNode<T>(work: (client: pg.PoolClient, node: string) => Promise<T>): Promise<Map<string, T>> {
    this.assertOpen(-1);
    const snapshot = this.requireSnapshot();
    const owners = [...new Set(snapshot.owners.filter((owner) => owner !== undefined))].sort();
    const results = await Promise.all(owners.map(async (name) => {
      const client = await (await this.pool(name)).connect();
      try {
        return [name, await work(client, name)] as const;
      } finally {
        client.release();
      }
    }));
    return new Map(results);
  }

  /**
   * One statement on a reference table ('plans' or 'schema.plans'): sent to
   * its holder (the only copy that takes writes), or with `read: true` to
   * any node that owns slots (each holds a whole copy, behind the holder by
   * replication lag only; spread round-robin).
   */
  async reference<R extends pg.QueryResultRow = pg.QueryResultRow>(table: string, sql: string, params: readonly unknown[] = [], options: { read?: boolean } = {}): Promise<pg.QueryResult<R>> {
    this.assertOpen(-1);
    const qualified = table.includes('.') ? table : `public.${table}`;
    // A table created after the router started is learnt on first use.
    if (!this.referenceHolders.has(qualified) && this.catalogSession) this.referenceHolders = await referenceHolders(this.catalogSession);
    const holder = this.referenceHolders.get(qualified);
    if (holder === undefined) throw new ReshardError('not_found', `no reference table named "${table}"`, 'create it with `reshard table create NAME --reference`, or use query() for a sharded table');
    const owners = [...new Set(this.requireSnapshot().owners.filter((owner) => owner !== undefined))].sort();
    const node = options.read && owners.length > 0 ? owners[this.referenceReads++ % owners.length]! : holder;
    try {
      return await this.onNode<R>(node, sql, params);
    } catch (error) {
      // The holder moved (`reshard table set-holder`): the old one refused the write, nothing was applied; once more on the new one.
      if ((error as { code?: string }).code !== NOT_HOLDER_SQLSTATE || !this.catalogSession) throw error;
      this.referenceHolders = await referenceHolders(this.catalogSession);
      const moved = this.referenceHolders.get(qualified);
      if (moved === undefined || moved === node) throw error;
      return this.onNode<R>(moved, sql, params);
    }
  }

  private async onNode<R extends pg.QueryResultRow>(node: string, sql: string, params: readonly unknown[]): Promise<pg.QueryResult<R>> {
    const client = await (await this.pool(node)).connect();
    try {
      return await client.query<R>(sql, params as unknown[]);
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.renewTimer);
    await this.load.stop();
    if (this.catalogSession) await unregisterRouter(this.catalogSession, this.id).catch(() => {});
    await Promise.all([this.catalogSession, this.notifier].map((session) => session?.end().catch(() => {})));
    await Promise.all([...this.pools.values()].map((pool) => pool.then((opened) => opened.end()).catch(() => {})));
  }

  /**
   * Sends `work` (which sends the route check first) to the slot's owner;
   * follows refusals: RSM02 → the owner the node names, RSM01 → held until
   * the switch (the gate, or a short backoff while the map has not shown the
   * freeze yet), a call whose session the node ended before it could commit → again on another connection.
   * Bounded by holdTimeoutMs, REDIRECTS_MAX and the pool's size. `earlier`:
   * the refusal of a first attempt made by query()'s fast path.
   */
  private async routed<T>(key: RoutingKey, slot: number, work: (client: pg.PoolClient, route: CallRoute) => Promise<T>,
    earlier?: { refusal: Refusal; tally: RefusalTally; route: CallRoute }, startedMs = performance.now()): Promise<T> {
    const deadline = startedMs + this.holdTimeoutMs;
    const tally = earlier?.tally ?? { redirects: 0, notApplied: 0, last: undefined };
    let refusal = earlier?.refusal;
    let route = earlier?.route;
    for (let attempt = 1; ; attempt++) {
      if (refusal !== undefined) {
        await this.afterRefusal(refusal, tally, route!, attempt - 1, deadline);
        // A retry is routed at the map it sees now: a split since the last attempt may have given the key a new slot.
        slot = this.slotOf(key);
      }
      this.assertOpen(slot);
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) {
        throw new RoutedCallError({ code: 'RESHARD_SLOT_FROZEN', node: this.currentRoute(slot).owner, slot, retryable: true,
          message: `stayed frozen (moving) for more than ${this.holdTimeoutMs} ms; nothing was applied`, cause: tally.last });
      }
      try {
        // Synchronous when the slot is not frozen: no promise on the common path.
        if (!this.gate.tryEnter(slot)) {
          await this.gate.enter(slot, leftMs);
          // Held through a split or a merge, the key may have another slot now: routed again at the new map.
          if (this.slotOf(key) !== slot) {
            this.gate.leave(slot);
            slot = this.slotOf(key);
            refusal = undefined;
            continue;
          }
        }
      } catch (error) {
        throw new RoutedCallError({ code: 'RESHARD_SLOT_FROZEN', node: this.currentRoute(slot).owner, slot, retryable: true,
          message: `stayed frozen (moving) for more than ${this.holdTimeoutMs} ms; nothing was applied`, cause: error });
      }
      route = this.currentRoute(slot);
      try {
        const pool = this.poolFor(route.owner, slot);
        let client: pg.PoolClient;
        try {
          const opened = this.openPools.get(route.owner) ?? await pool;
          client = await checkoutWithin(opened, this.checkoutTimeoutMs.get(opened) ?? ROUTER_HOLD_TIMEOUT_MS_DEFAULT);
        } catch (error) {
          throw withRoute(routedError(error, route.owner, slot, 'connect'), route);
        }
        let broken: Error | undefined;
        this.leases.using(client, slot);
        try {
          const result = await work(client, route);
          // Where the call went: a result that surprises can be explained.
          if (result && typeof result === 'object') (result as { reshardRoute?: CallRoute }).reshardRoute = route;
          this.load.meter.record(slot, performance.now() - startedMs, result);
          return result;
        } catch (error) {
          const failure = this.failureOf(error, route, tally);
          broken = failure.broken;
          if (failure.thrown) throw failure.thrown;
          refusal = failure.refusal;
        } finally {
          // A connection that broke (terminated, reset) is not given back to the pool.
          client.release(broken);
        }
      } finally {
        this.gate.leave(slot);
      }
    }
  }

  /**
   * What a failed attempt means: a refusal to follow (nothing was applied),
   * or the error the call ends with; and whether its connection broke.
   */
  private failureOf(error: unknown, route: CallRoute, tally: RefusalTally): { refusal?: Refusal; thrown?: Error; broken?: Error } {
    const code = (error as { code?: string }).code;
    if (code === MOVED_SQLSTATE) {
      tally.last = error;
      this.followRedirect(route.slot, error);
      return { refusal: 'moved' };
    }
    if (code === FENCE_SQLSTATE) {
      tally.last = error;
      return { refusal: 'frozen' };
    }
    if (wasNotApplied(error)) {
      tally.last = error;
      return { refusal: 'not-applied' };
    }
    if ((error as { reshardNotApplied?: boolean }).reshardNotApplied === true && tally.notApplied < this.poolSize + 1) {
      // The node ended the session before the call could commit: the same call on another connection.
      tally.notApplied++;
      tally.last = error;
      return { refusal: 'session-ended', broken: asError(error) };
    }
    const phase = (error as { reshardPhase?: CallPhase }).reshardPhase ?? 'statement';
    return { thrown: withRoute(routedError(error, route.owner, route.slot, phase), route), ...(connectionEnded(error) ? { broken: asError(error) } : {}) };
  }

  /** Before the next attempt after `refusal`: the redirect's bound, or a short backoff for a slot frozen on the node. */
  private async afterRefusal(refusal: Refusal, tally: RefusalTally, route: CallRoute, attempt: number, deadline: number): Promise<void> {
    if (refusal === 'moved') {
      tally.redirects++;
      if (tally.redirects > REDIRECTS_MAX) {
        throw withRoute(new RoutedCallError({ code: 'RESHARD_ROUTE_UNRESOLVED', node: route.owner, slot: route.slot, retryable: true,
          message: `was redirected ${tally.redirects} times; nothing was applied`, cause: tally.last }), route);
      }
      return;
    }
    if (refusal === 'session-ended') return;
    // Frozen on the node (its freeze is not in our map yet, or the switch not yet): ask the catalog, back off briefly.
    void this.resync().catch(() => {});
    await sleep(Math.min(5 * 2 ** Math.min(attempt, 5), Math.max(1, deadline - performance.now())));
  }

  /**
   * Which check a single statement on `client` carries: none when the
   * connection holds its node's lease and the route is still the map's, the
   * lease check when leases are on, else the route check. A call routed
   * before its slot froze or moved (it got past the gate first) carries the
   * check: the node may already have been told that this router knows.
   */
  private checkKind(client: pg.ClientBase, route: CallRoute): RouteCheckKind {
    if (!this.leases.enabled) return 'route';
    if (!this.leases.holds(client)) return 'lease';
    const current = this.currentRoute(route.slot);
    return !this.gate.isFrozen(route.slot) && current.owner === route.owner && current.epoch === route.epoch ? 'leased' : 'route';
  }

  /** The owner a node named in its RSM02 refusal; used until the catalog's map is at least that new. */
  private followRedirect(slot: number, error: unknown): void {
    const detail = parseRefusal(error);
    if (!detail?.owner) return;
    const known = this.redirects.get(slot);
    if (!known || detail.epoch >= known.epoch) this.redirects.set(slot, { owner: detail.owner, epoch: detail.epoch });
    if (!this.requireSnapshot().nodes.has(detail.owner)) void this.resync().catch(() => {});
  }

  private currentRoute(slot: number): CallRoute {
    const snapshot = this.requireSnapshot();
    const redirect = this.redirects.get(slot);
    if (redirect && redirect.epoch > snapshot.epoch) return { slot, owner: redirect.owner, epoch: redirect.epoch };
    return { slot, owner: snapshot.owners[slot]!, epoch: snapshot.epoch };
  }

  private assertOpen(slot: number): void {
    if (this.closed) throw new RoutedCallError({ code: 'RESHARD_ROUTER_CLOSED', node: undefined, slot, retryable: false, message: 'cannot be served: the router is closed (create a new one with Router.connect)' });
  }

  private requireSnapshot(): MapSnapshot {
    assert(this.snapshot, 'the router has a slot map');
    return this.snapshot;
  }

  private poolFor(nodeName: string, slot: number): Promise<pg.Pool> {
    if (!this.pools.has(nodeName) && !this.requireSnapshot().nodes.has(nodeName)) {
      throw new RoutedCallError({ code: 'RESHARD_ROUTE_UNRESOLVED', node: nodeName, slot, retryable: true,
        message: 'is not in this router\'s copy of the catalog yet (it learns nodes from the catalog); nothing was applied' });
    }
    return this.pool(nodeName);
  }

  private pool(nodeName: string): Promise<pg.Pool> {
    let pool = this.pools.get(nodeName);
    if (!pool) {
      const node = this.requireSnapshot().nodes.get(nodeName);
      assert(node, `node ${nodeName} of the slot map is known`);
      const password = this.options.passwords?.(nodeName);
      const connection = { ...node.connection, ...(password !== undefined ? { password } : {}) };
      const opening = negotiatedClientConfig(connection, `reshard router ${this.name}`, `node "${nodeName}"`)
        .catch((error: unknown) => { throw unreachableError({ role: `node "${nodeName}"`, connection }, error); })
        .then((config) => {
          const opened = openNodePool(config, this.poolSize);
          this.checkoutTimeoutMs.set(opened, config.connectionTimeoutMillis ?? ROUTER_HOLD_TIMEOUT_MS_DEFAULT);
          opened.on('error', () => {});
          this.leases.follow(opened);
          this.openPools.set(nodeName, opened);
          // A checked-out client has no pool listener: a node that dies mid-call would emit an unhandled
          // 'error' and crash the application. The call itself still fails with the error.
          opened.on('connect', (client) => client.on('error', () => {}));
          return opened;
        });
      // A node that could not be reached is tried again by the next call.
      opening.catch(() => { if (this.pools.get(nodeName) === opening) this.pools.delete(nodeName); });
      pool = opening;
      this.pools.set(nodeName, pool);
    }
    return pool;
  }

  private async start(): Promise<void> {
    await this.connectCatalog();
    if (this.options.keyTypes) this.keyTypes = this.options.keyTypes;
    else {
      const groups = await colocationKeyTypes(this.catalogSession!);
      const distinct = new Set(groups.map((keyTypes) => keyTypes.join(',')));
      if (distinct.size !== 1) {
        throw new ReshardError('bad_input', `the catalog has ${distinct.size} kinds of shard keys`, 'pass keyTypes to Router.connect (e.g. ["bigint"])');
      }
      this.keyTypes = groups[0]!;
    }
    await this.resync();
    if (!this.snapshot) {
      // The first map must come from the catalog; later ones may wait for it.
      this.snapshot = await readRouterSnapshot(this.catalogSession!);
    }
    this.load.start();
  }

  /**
   * Opens the router's two catalog sessions: one that only listens, so that
   * a NOTIFY reaches the router the moment the catalog sends it (a session
   * busy with a query delivers it only once the query ends: a slow
   * acknowledgement or load report would hold up a switch's release), and
   * one for the router's reads, acknowledgements and load reports. Either
   * ending drops both (catalogLost); the next sync opens them again, listening
   * first, and reads the whole map, so a change notified meanwhile is not missed.
   */
  private async connectCatalog(): Promise<void> {
    let notifier: pg.Client | undefined;
    let session: pg.Client | undefined;
    let ended = false;
    const lost = (): void => {
      ended = true;
      if ((session !== undefined && this.catalogSession === session) || (notifier !== undefined && this.notifier === notifier)) this.catalogLost();
    };
    try {
      notifier = await connectTo({ role: 'catalog', connection: this.catalog }, `reshard router ${this.name} (listening)`);
      notifier.on('error', () => {});
      notifier.on('end', lost);
      notifier.on('notification', (message) => this.mapNotified(message.payload));
      await listenForSlotMapChanges(notifier);
      session = await connectTo({ role: 'catalog', connection: this.catalog }, `reshard router ${this.name}`);
      session.on('error', () => {});
      session.on('end', lost);
      if (ended) throw new ReshardError('unreachable', 'a catalog session ended while the router connected', 'check that the catalog runs; the router tries again');
    } catch (error) {
      await Promise.all([notifier, session].map((opened) => opened?.end().catch(() => {})));
      throw error;
    }
    this.notifier = notifier;
    this.catalogSession = session;
  }

  /**
   * Loads the map and applies it (holding new calls for frozen slots,
   * releasing those of switched ones), then has it acknowledged (see
   * acknowledge). Serialised: a request during a run queues one more. The
   * map is not held up by the acknowledgement of the one before: a switch's
   * held calls go as soon as its map is read, even while the freeze's lease
   * report is still on its way.
   */
  private resync(): Promise<void> {
    return this.syncs.request();
  }

  /**
   * A freeze, an unfreeze or a switch names its change in the notification:
   * applied here at once when it follows the map held (no catalog read
   * between a switch and its held calls going to the new owner, nor between
   * a freeze and its acknowledgement); anything else is read from the catalog.
   */
  private mapNotified(payload: string | undefined): void {
    const change = parseSlotMapChange(payload);
    if (change !== undefined && this.applyChange(change)) return;
    void this.resync().catch(() => {});
  }

  /** Applies `change` to the map held if it is the very next epoch's; false when the map must be read instead. */
  private applyChange(change: SlotMapChange): boolean {
    const current = this.snapshot;
    if (this.closed || current === undefined || change.epoch !== current.epoch + 1) return false;
    if (change.owner !== undefined && !current.nodes.has(change.owner)) return false;
    if (!change.slots.every((slot) => current.owners[slot] !== undefined)) return false;
    const owners = current.owners.slice();
    if (change.owner !== undefined) for (const slot of change.slots) owners[slot] = change.owner;
    const frozen = new Set(current.frozen);
    for (const slot of change.slots) {
      if (change.state === 'frozen') frozen.add(slot);
      else frozen.delete(slot);
    }
    // The lookup (key → slot) depends on the slots' moduli only, which these changes leave alone.
    this.install({ ...current, epoch: change.epoch, owners, frozen: [...frozen].sort((a, b) => a - b) });
    void this.acknowledge().catch(() => {});
    return true;
  }

  /** Makes `snapshot` the map calls are routed by. Order matters: the new owners are in place before held calls are released. */
  private install(snapshot: MapSnapshot): void {
    this.snapshot = snapshot;
    for (const [slot, redirect] of this.redirects) if (redirect.epoch <= snapshot.epoch) this.redirects.delete(slot);
    this.gate.setFrozen(snapshot.frozen);
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.catalogSession) await this.connectCatalog();
      const catalog = this.catalogSession!;
      const snapshot = await readRouterSnapshot(catalog);
      const previous = this.snapshot;
      // A change applied from its notification while this read was on its way is newer (epochs only grow): kept.
      if (previous !== undefined && snapshot.epoch < previous.epoch) return;
      this.install(snapshot);
      // The acknowledgement (with its lease report) starts now, beside the read of the reference tables' holders:
      // the fence waits for the report. The holders after the gate, not before: a held call waits for no more than
      // the map's own read (a switch's client-seen pause); a reference-table call in between uses the holders read
      // with the previous map (a node is given a reference table before any slot). A catalog not yet upgraded to
      // reference tables has none: routing by slot goes on.
      const acknowledged = this.acknowledge();
      this.referenceHolders = await referenceHolders(catalog).catch(() => this.referenceHolders);
      for (const [name, node] of snapshot.nodes) {
        const known = previous?.nodes.get(name);
        if (known && JSON.stringify(known.connection) !== JSON.stringify(node.connection)) {
          await this.pools.get(name)?.then((opened) => opened.end()).catch(() => {});
          this.pools.delete(name);
          this.openPools.delete(name);
        }
      }
      // The first map is acknowledged (and this router registered) before connect() returns.
      if (!this.registered) await acknowledged;
    } catch {
      this.catalogLost();
    }
  }

  /**
   * Acknowledges the newest applied map: first each node whose slots froze
   * or left it since the last acknowledged map learns that this router's
   * connections there follow the new one (so its fence need not wait for
   * them; bounded: a node that does not hear it waits its own bound at the
   * fence, then ends those sessions), then the catalog gets the epoch (new
   * calls on frozen slots are held from here on; in-flight work is the
   * nodes' business: the fence waits for it through the route lock).
   * Serialised like resync, apart from it.
   */
  private acknowledge(): Promise<void> {
    return this.acknowledgements.request();
  }

  private async acknowledgeOnce(): Promise<void> {
    const snapshot = this.snapshot;
    const catalog = this.catalogSession;
    if (this.closed || !snapshot || !catalog) return;
    try {
      const previous = this.acknowledged;
      if (previous && this.leases.enabled) await Promise.race([this.reportLeavingSlots(previous, snapshot), sleep(LEASE_REPORT_WAIT_MS)]);
      this.acknowledged = snapshot;
      const catalogEpoch = await renewRouterLease(catalog, { id: this.id, epoch: snapshot.epoch, leaseMs: this.leaseMs });
      if (!this.registered) {
        await registerRouter(catalog, { id: this.id, name: this.name, epoch: snapshot.epoch, leaseMs: this.leaseMs });
        this.registered = true;
      }
      this.catalogReachable = true;
      if (catalogEpoch !== snapshot.epoch && !this.closed) void this.resync().catch(() => {});
    } catch {
      this.catalogLost();
    }
  }

  /** The catalog is unreachable: keep serving from the cached map (the nodes refuse stale work); retry soon. */
  private catalogLost(): void {
    this.catalogReachable = false;
    const lost = [this.catalogSession, this.notifier];
    this.catalogSession = undefined;
    this.notifier = undefined;
    for (const session of lost) void session?.end().catch(() => {});
  }

  /** Tells each node whose slots froze or changed owner between `previous` and `next` (see NodeLeases.seen). */
  private async reportLeavingSlots(previous: MapSnapshot, next: MapSnapshot): Promise<void> {
    const wasFrozen = new Set(previous.frozen);
    const isFrozen = new Set(next.frozen);
    const leaving = new Map<string, Set<number>>();
    previous.owners.forEach((owner, slot) => {
      if (owner === undefined) return;
      if ((isFrozen.has(slot) && !wasFrozen.has(slot)) || next.owners[slot] !== owner) {
        let slots = leaving.get(owner);
        if (!slots) leaving.set(owner, (slots = new Set()));
        slots.add(slot);
      }
    });
    await Promise.all([...leaving].map(async ([node, slots]) => {
      const pool = this.openPools.get(node);
      if (pool) await this.leases.seen(node, pool, next.epoch, slots);
    }));
  }

  private scheduleRenewal(): void {
    if (this.closed) return;
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.resync().catch(() => {}), this.catalogReachable ? Math.max(50, this.leaseMs / 3) : 250);
    this.renewTimer.unref();
  }
}

/** The JSON DETAIL of a route refusal (RSM01/RSM02). */
function parseRefusal(error: unknown): { owner?: string; epoch: number } | undefined {
  try {
    const detail = JSON.parse((error as { detail?: string }).detail ?? '') as { owner?: string; epoch?: number };
    return { ...(detail.owner !== undefined ? { owner: detail.owner } : {}), epoch: Number(detail.epoch ?? 0) };
  } catch {
    return undefined;
  }
}

function withRoute<E extends Error>(error: E, route: CallRoute): E {
  return Object.assign(error, { reshardRoute: route });
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function positiveMs(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new ReshardError('bad_input', `${name} must be a positive number of milliseconds, got ${String(value)}`, `pass e.g. ${name}: ${fallback}`);
  return value;
}

/**
 * The connection is gone (not an error of the SQL): the node ended the session
 * (57P01 terminated, 57P02 crash, 57P03 starting up) or the socket broke. The
 * connection must not go back to the pool.
 */
function connectionEnded(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError)) return true;
  return error.code === '57P01' || error.code === '57P02' || error.code === '57P03';
}

/**
 * Errors that prove the call changed nothing and may be retried: a row the
 * node had no partition for (23514 from tuple routing; a safety net — the
 * route check refuses such work first).
 */
function wasNotApplied(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return code === '23514' && /no partition of relation/.test(message ?? '');
}

async function readRouterSnapshot(catalog: pg.ClientBase): Promise<MapSnapshot> {
  const map = await readRouterMap(catalog);
  return { ...map, lookup: slotLookup({ modulus: map.modulus, epoch: map.epoch, owners: map.owners, ...(map.slotModuli ? { slotModuli: map.slotModuli } : {}) }),
    nodes: new Map(map.nodes.map((node) => [node.name, node])) };
}
