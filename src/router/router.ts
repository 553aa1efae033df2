import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { registerRouter, renewRouterLease, unregisterRouter } from '../catalog/routers.js';
import { SLOT_MAP_CHANNEL } from '../catalog/slotMap.js';
import { assert } from '../core/assert.js';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { errorFields, log } from '../core/log.js';
import { slotOfKey, type ShardKeyType, type ShardKeyValue } from '../core/hash.js';
import { connectTo, negotiatedClientConfig, unreachableError } from '../node/connectNode.js';
import { parseConnectionHere } from '../node/conninfoSources.js';
import { FENCE_SQLSTATE } from '../node/nodeHelpers.js';
import { SlotGate } from './slotGate.js';

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
  /** If the slot map cannot be confirmed for this long, the router stops serving. */
  leaseMs?: number;
  /** Longest a call waits for a frozen slot before failing with a retryable error. */
  holdTimeoutMs?: number;
  /** Connections per node. */
  poolSizePerNode?: number;
}

/** A routed call's key: one value, or one per shard key column. */
export type RoutingKey = ShardKeyValue | readonly ShardKeyValue[];

interface RouterNode {
  name: string;
  connection: ConnectionSettings;
}

interface MapSnapshot {
  epoch: number;
  owners: string[];
  frozen: number[];
  nodes: Map<string, RouterNode>;
}

export const ROUTER_LEASE_MS_DEFAULT = 5_000;
export const ROUTER_HOLD_TIMEOUT_MS_DEFAULT = 10_000;

/**
 * The application-side client. It computes a key's slot locally (the same
 * hash as PostgreSQL), follows the slot map (LISTEN plus a lease), registers
 * itself and acknowledges each epoch once it holds new work for frozen slots
 * and has drained its in-flight work on them. It never sends work for a slot
 * to a node after that slot's switch: if it cannot confirm the map within its
 * lease, it refuses to serve.
 */
export class Router {
  readonly id = randomUUID();
  private readonly gate = new SlotGate();
  /** One pool per node, made on first use (its TLS setting may need a first connection to learn). */
  private readonly pools = new Map<string, Promise<pg.Pool>>();
  private readonly catalog: ConnectionSettings;
  private listener: pg.Client | undefined;
  private snapshot: MapSnapshot | undefined;
  private leaseValidUntil = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private resyncRequested = false;
  /** The epoch acknowledged last: a freeze whose in-flight calls have not drained is not acknowledged. */
  private ackedEpoch = 0;
  /** Frozen slots whose in-flight calls had not finished at the last acknowledgement attempt. */
  private undrained = new Set<number>();
  private closed = false;
  private keyTypes: ShardKeyType[] = [];
  private readonly leaseMs: number;
  private readonly holdTimeoutMs: number;
  private readonly name: string;

  private constructor(private readonly options: RouterOptions) {
    this.leaseMs = positiveMs(options.leaseMs, 'leaseMs', ROUTER_LEASE_MS_DEFAULT);
    this.holdTimeoutMs = positiveMs(options.holdTimeoutMs, 'holdTimeoutMs', ROUTER_HOLD_TIMEOUT_MS_DEFAULT);
    this.name = options.name ?? `${hostname()}:${process.pid}`;
    this.catalog = typeof options.catalog === 'string' ? parseConnectionHere(options.catalog, 'the router\'s catalog option') : options.catalog;
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
    const snapshot = this.requireSnapshot();
    return { owner: snapshot.owners[slot]!, frozen: this.gate.isFrozen(slot), epoch: snapshot.epoch };
  }

  slotOf(key: RoutingKey): number {
    const snapshot = this.requireSnapshot();
    const values = Array.isArray(key) ? key : [key as ShardKeyValue];
    return slotOfKey(this.keyTypes, values, snapshot.owners.length);
  }

  /** Runs one statement on the node that owns the key's slot. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(key: RoutingKey, sql: string, params: readonly unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.routed(key, (client) => client.query<R>(sql, params as unknown[]));
  }

  /** Runs `work` in one transaction on the node that owns the key's slot. */
  async transaction<T>(key: RoutingKey, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.routed(key, async (client) => {
      await client.query('BEGIN');
      try {
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      }
    });
  }

  /** Cross-slot work, made explicit: `work` once on every node that owns slots. */
  async eachNode<T>(work: (client: pg.PoolClient, node: string) => Promise<T>): Promise<Map<string, T>> {
    this.assertServing();
    const snapshot = this.requireSnapshot();
    const owners = [...new Set(snapshot.owners)].sort();
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.renewTimer);
    if (this.listener) {
      await unregisterRouter(this.listener, this.id).catch(() => {});
      await this.listener.end().catch(() => {});
    }
    await Promise.all([...this.pools.values()].map((pool) => pool.then((opened) => opened.end()).catch(() => {})));
  }

  private async routed<T>(key: RoutingKey, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const slot = this.slotOf(key);
    // A fenced write (a writer outside the protocol got ahead of us) was not applied: retry once on the new map.
    for (let attempt = 1; ; attempt++) {
      this.assertServing();
      await this.gate.enter(slot, this.holdTimeoutMs);
      let fenced = false;
      let route: { slot: number; owner: string; epoch: number } | undefined;
      try {
        const snapshot = this.requireSnapshot();
        route = { slot, owner: snapshot.owners[slot]!, epoch: snapshot.epoch };
        const client = await (await this.pool(route.owner)).connect();
        try {
          // Checked again at the last moment: a call must not leave after the lease lapsed.
          this.assertServing();
          const result = await work(client);
          // Where the call went: a result that surprises (0 rows) can be explained.
          if (result && typeof result === 'object') Object.assign(result, { reshardRoute: route });
          return result;
        } finally {
          client.release();
        }
      } catch (error) {
        // Where the failed call went, for whoever has to explain it.
        if (route && error && typeof error === 'object') Object.assign(error, { reshardRoute: route });
        if (!wasNotApplied(error) || attempt >= 2) throw error;
        routerLogger.info({ slot, owner: route?.owner, epoch: route?.epoch, ...errorFields(error) }, `a call for slot ${slot} was refused by ${route?.owner ?? 'its owner'} (the slot moved): retried on the new slot map`);
        fenced = true;
      } finally {
        // Left before any resync: a resync drains in-flight calls, this one included.
        this.gate.leave(slot);
      }
      if (fenced) await this.resync();
    }
  }

  private assertServing(): void {
    if (this.closed) throw new ReshardError('precondition', 'the router is closed', 'create a new one with Router.connect');
    if (performance.now() > this.leaseValidUntil) {
      throw new ReshardError('unreachable', `the router could not confirm the slot map within its ${this.leaseMs} ms lease`, 'retry: the router serves again once the catalog is reachable');
    }
  }

  private requireSnapshot(): MapSnapshot {
    assert(this.snapshot, 'the router has a slot map');
    return this.snapshot;
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
          const opened = new pg.Pool({ ...config, max: this.options.poolSizePerNode ?? 4 });
          opened.on('error', () => {});
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
    await this.connectListener();
    if (this.options.keyTypes) this.keyTypes = this.options.keyTypes;
    else {
      const groups = await this.listener!.query<{ key_types: ShardKeyType[] }>('SELECT key_types FROM reshard.colocation_group ORDER BY name');
      const distinct = new Set(groups.rows.map((row) => row.key_types.join(',')));
      if (distinct.size !== 1) {
        throw new ReshardError('bad_input', `the catalog has ${distinct.size} kinds of shard keys`, 'pass keyTypes to Router.connect (e.g. ["bigint"])');
      }
      this.keyTypes = groups.rows[0]!.key_types;
    }
    await this.resync();
  }

  private async connectListener(): Promise<void> {
    const client = await connectTo({ role: 'catalog', connection: this.catalog }, `reshard router ${this.name}`);
    client.on('notification', () => void this.resync().catch(() => {}));
    client.on('error', () => {});
    client.on('end', () => {
      if (this.listener === client) this.listener = undefined;
    });
    await client.query(`LISTEN ${SLOT_MAP_CHANNEL}`);
    this.listener = client;
  }

  /**
   * Loads the map if it changed, applies it (holding work for frozen slots),
   * drains in-flight work on newly frozen slots, then acknowledges the epoch
   * and renews the lease. Serialised: a request during a run queues one more.
   */
  private resync(): Promise<void> {
    if (this.syncing) {
      this.resyncRequested = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.resyncRequested = false;
          await this.syncOnce();
        } while (this.resyncRequested && !this.closed);
      } finally {
        this.syncing = undefined;
        this.scheduleRenewal();
      }
    })();
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    const startedAt = performance.now();
    try {
      if (!this.listener) await this.connectListener();
      const catalog = this.listener!;
      const snapshot = await readRouterSnapshot(catalog);
      const previous = this.snapshot;
      const newlyFrozen = new Set(snapshot.frozen.filter((slot) => !this.gate.isFrozen(slot)));
      // Order matters: the new owners are in place before held calls are released.
      this.snapshot = snapshot;
      this.gate.setFrozen(snapshot.frozen);
      for (const [name, node] of snapshot.nodes) {
        const known = previous?.nodes.get(name);
        if (known && JSON.stringify(known.connection) !== JSON.stringify(node.connection)) {
          await this.pools.get(name)?.then((opened) => opened.end()).catch(() => {});
          this.pools.delete(name);
        }
      }
      // A call still running on a just-frozen slot (a slow query) holds back the acknowledgement, not
      // the lease: the router keeps serving other slots, and the freeze waits, bounded on its side.
      const toDrain = new Set([...newlyFrozen, ...[...this.undrained].filter((slot) => this.gate.isFrozen(slot))]);
      const drained = await this.gate.drain(toDrain, Math.max(50, this.leaseMs / 4));
      this.undrained = drained ? new Set() : toDrain;
      if (drained) this.ackedEpoch = snapshot.epoch;
      const catalogEpoch = await renewRouterLease(catalog, { id: this.id, epoch: this.ackedEpoch, leaseMs: this.leaseMs });
      if (!previous) await registerRouter(catalog, { id: this.id, name: this.name, epoch: this.ackedEpoch, leaseMs: this.leaseMs });
      if (catalogEpoch !== snapshot.epoch || !drained) this.resyncRequested = true;
      // The lease is counted from before the read, so it never outlives what the catalog granted.
      this.leaseValidUntil = startedAt + this.leaseMs;
    } catch {
      // The catalog is unreachable: keep serving until the lease lapses, then refuse; retry soon.
      await this.listener?.end().catch(() => {});
      this.listener = undefined;
    }
  }

  private scheduleRenewal(): void {
    if (this.closed) return;
    clearTimeout(this.renewTimer);
    const healthy = performance.now() < this.leaseValidUntil;
    this.renewTimer = setTimeout(() => void this.resync().catch(() => {}), healthy ? Math.max(50, this.leaseMs / 3) : 250);
    this.renewTimer.unref();
  }
}

function positiveMs(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new ReshardError('bad_input', `${name} must be a positive number of milliseconds, got ${String(value)}`, `pass e.g. ${name}: ${fallback}`);
  return value;
}

/**
 * Errors that prove the call changed nothing and may be retried on a fresh
 * map: a fenced slot (RSM01), and a row the node had no partition for (23514
 * from tuple routing; a safety net — the session that kept a partition
 * descriptor from before an ATTACH is prevented in attachSlot).
 */
function wasNotApplied(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return code === FENCE_SQLSTATE || (code === '23514' && /no partition of relation/.test(message ?? ''));
}

async function readRouterSnapshot(catalog: pg.ClientBase): Promise<MapSnapshot> {
  // One statement, so the epoch and the slots are one consistent snapshot.
  const result = await catalog.query<{ epoch: string; owners: string[]; frozen: number[]; nodes: { name: string; host: string; port: number; database: string; username: string; params: Record<string, string> | null }[] }>(
    `SELECT c.epoch::text,
            (SELECT array_agg(owner ORDER BY slot) FROM reshard.slot) AS owners,
            (SELECT coalesce(array_agg(slot ORDER BY slot), '{}') FROM reshard.slot WHERE state = 'frozen') AS frozen,
            (SELECT json_agg(json_build_object('name', name, 'host', host, 'port', port, 'database', database, 'username', username, 'params', params))
               FROM reshard.node WHERE state <> 'removed') AS nodes
       FROM reshard.cluster c WHERE c.id = 1`,
  );
  const row = result.rows[0];
  if (!row || !row.owners) throw new ReshardError('precondition', 'the catalog has no slot map', 'run `reshard init` and add nodes first');
  return {
    epoch: Number(row.epoch),
    owners: row.owners,
    frozen: row.frozen,
    nodes: new Map((row.nodes ?? []).map((node) => [node.name, { name: node.name, connection: {
      host: node.host, port: node.port, database: node.database, user: node.username,
      ...(node.params && Object.keys(node.params).length > 0 ? { params: node.params } : {}),
    } }])),
  };
}
