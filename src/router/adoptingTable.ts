import pg from 'pg';
import { ADOPTION_STATE_CHANNEL, adoptionRoute, listenForAdoptionStates, parseAdoptionStateChange, type AdoptionRoute } from '../catalog/adoptions.js';
import { listenForSlotMapChanges } from '../catalog/routerMapReads.js';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { connectTo, negotiatedClientConfig } from '../plumbing/connectTo.js';
import { parseConnectionHere } from '../plumbing/conninfoSources.js';
import { FENCE_SQLSTATE } from '../node/nodeHelpers.js';
import { ADOPTING_SOURCE_CHECK_PREPARED_SQL, NOT_ADOPTING_SQLSTATE } from '../node/adoptingSourceCheck.js';
import { ADOPTED_TABLE_CHECK_PREPARED_SQL, warmStagedTableSql } from '../node/adoptedTableCheck.js';
import { sendCheckedStatement, type PreparedCheck } from './routedStatement.js';
import { ROUTER_HOLD_TIMEOUT_MS_DEFAULT, type Router, type RoutingKey } from './router.js';
import { POOL_IDLE_MS } from './nodePool.js';

export interface AdoptingTableOptions {
  /** The catalog (as for the router). */
  catalog: ConnectionSettings | string;
  table: string;
  schema?: string;
  /** The old table's servers' password, if libpq's conventions do not give it (the same for every source). */
  sourcePassword?: string;
  /**
   * For a table adopted from several sources (`--from URL1,URL2,…`): which
   * source holds a key's row until the switch (and again after a rollback) —
   * the application's own scheme, e.g. `(id) => Number(BigInt(id) % 3n)`.
   * It returns the source's position in `--from` (0-based) or its connection
   * string as given there (host, port and database are compared). Not needed
   * with one source.
   */
  sourceFor?: (key: RoutingKey) => number | string;
  /** Longest a call waits through the cutover (or a rollback) before it fails with a retryable error. */
  holdTimeoutMs?: number;
  /** Connections to each source at most. */
  poolSize?: number;
}

/** How often a held call asks the catalog whether the cutover is over, should no notification come (a held call wakes at once on one). */
const HOLD_POLL_MS = 25;
/**
 * How often, while the table is being adopted, the router's node pools are
 * kept open (`Router.warmPools`): the calls held through the cutover are
 * released to the nodes all at once, and opening their connections then
 * would add tens of ms to the write pause. Below pg's 10 s idle timeout.
 */
const WARM_POOLS_EVERY_MS = 3_000;
/**
 * Longest one read of the adoption's state may take; past it the catalog
 * session is dropped and the next read opens a new one (a stalled link
 * would otherwise keep every later read, and the held calls, waiting).
 */
const ROUTE_READ_TIMEOUT_MS = 2_000;
/** PostgreSQL's undefined_table: a separate source's table renamed away by the switch. */
const UNDEFINED_TABLE_SQLSTATE = '42P01';
/** The prepared names of the two checks (one per side of the switch). */
const SOURCE_CHECK_NAME = 'reshard_adopting_source';
const ADOPTED_CHECK_NAME = 'reshard_adopted_table';

/**
 * Routes one table through its adoption (`reshard table adopt`): to the old
 * table until the switch, held through the cutover (as a frozen slot's
 * calls are), then by slot through the router — and back to the old table
 * after a rollback. The old table's fence (RSM01) means "the cutover has
 * begun": the call is held and sent again once the table is switched, so an
 * application on this path sees no error. With several sources, the
 * application says where a key lives until the switch (`sourceFor`).
 *
 * It follows the adoption's state from the catalog's notifications, whose
 * payload carries the new state: a held call is released the moment the
 * switch's notification arrives, with no catalog read in the write pause.
 *
 * A route read at a stale state never reaches the wrong table: each side
 * of the switch has a node check in the same round trip. Calls to the old
 * table on a node carry the adopting-source check (refused once the name is
 * the sharded table's); calls by slot, from the switch until
 * `forget-source` (while a rollback may give the name back to the old
 * table), carry the adopted-table check (refused once the sharded table is
 * being rolled back or gone). A refused call is held, the state read again,
 * and the call sent where it says.
 */
export class AdoptingTable {
  private route: AdoptionRoute = { state: 'none', sources: [], epoch: 0 };
  /** One pool per source (by position), opened on first use; dropped when another adoption of the table begins. */
  private sourcePools = new Map<number, pg.Pool>();
  private poolsOfMigration: number | undefined;
  private listener: pg.Client | undefined;
  private closed = false;
  private readonly holdTimeoutMs: number;
  private readonly catalog: ConnectionSettings;
  private readonly table: { schema: string; name: string };
  private readonly adoptedCheck: PreparedCheck;
  private readonly sourceCheck: PreparedCheck;

  private constructor(private readonly router: Router, private readonly options: AdoptingTableOptions) {
    this.holdTimeoutMs = options.holdTimeoutMs ?? ROUTER_HOLD_TIMEOUT_MS_DEFAULT;
    this.catalog = typeof options.catalog === 'string' ? parseConnectionHere(options.catalog, 'the catalog option') : options.catalog;
    this.table = { schema: options.schema ?? 'public', name: options.table };
    this.adoptedCheck = { name: ADOPTED_CHECK_NAME, text: ADOPTED_TABLE_CHECK_PREPARED_SQL, values: [this.table.schema, this.table.name] };
    this.sourceCheck = { name: SOURCE_CHECK_NAME, text: ADOPTING_SOURCE_CHECK_PREPARED_SQL, values: [this.table.schema, this.table.name] };
  }

  static async connect(router: Router, options: AdoptingTableOptions): Promise<AdoptingTable> {
    const table = new AdoptingTable(router, options);
    try {
      await table.connectListener();
      await table.refresh();
      if (!table.listener) throw new ReshardError('unreachable', `the catalog did not answer the state of ${table.table.name}'s adoption within ${ROUTE_READ_TIMEOUT_MS} ms`, 'check that the catalog is reachable, then connect again');
    } catch (error) {
      await table.close();
      throw error;
    }
    return table;
  }

  /**
   * The catalog session that hears the adoption's notifications and reads
   * its state. Should it end (the catalog restarted, a link reset), the next
   * read opens another and reads the state afresh: a notification missed
   * meanwhile is made up for by that read.
   */
  private async connectListener(): Promise<pg.Client> {
    const client = await connectTo({ role: 'the catalog', connection: this.catalog }, 'reshard adopting table');
    const dropped = (): void => {
      if (this.listener === client) this.listener = undefined;
    };
    client.on('error', dropped);
    client.on('end', dropped);
    client.on('notification', (message) => this.notified(message.channel, message.payload));
    try {
      await listenForSlotMapChanges(client);
      await listenForAdoptionStates(client);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      throw new ReshardError('aborted', 'the adopting table was closed', 'connect it again');
    }
    this.listener = client;
    return client;
  }

  /** Where calls go now: the old table, held, or the sharded table. */
  get state(): AdoptionRoute['state'] {
    return this.route.state;
  }

  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  /** Resolved (and replaced) whenever the route's state changes: held calls wait on it. */
  private routeChange = AdoptingTable.signal();
  private warmTimer: NodeJS.Timeout | undefined;

  /**
   * A state change of this table's adoption carries the new state: taken at
   * once (no catalog read). Anything else (a new adoption, a slot map change)
   * is read from the catalog.
   */
  private notified(channel: string, payload: string | undefined): void {
    if (channel === ADOPTION_STATE_CHANNEL) {
      const change = parseAdoptionStateChange(payload);
      if (!change || change.schema !== this.table.schema || change.name !== this.table.name) return;
      if (change.migrationId === this.route.migrationId) {
        if (change.stagedName !== undefined) this.warmSessions(change.schema, change.stagedName);
        this.follow({ ...this.route, state: change.state, epoch: change.epoch });
        return;
      }
    }
    void this.refresh().catch(() => {});
  }

  /** Takes `route` unless what is known is newer (a read begun before a notification may end after it). */
  private follow(route: AdoptionRoute): void {
    if (route.epoch < this.route.epoch) return;
    const previous = this.route.state;
    this.route = route;
    if (route.state !== previous) this.routeChanged();
  }

  /** Reads the table's adoption state; one read at a time on the listening session (a notification and a held call may both ask). */
  private refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.refreshing) {
      // A read already under way may have begun before this change: read once more after it.
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        const listener = this.listener ?? await this.connectListener();
        let timer: NodeJS.Timeout | undefined;
        const route = await Promise.race([
          adoptionRoute(listener, this.table),
          new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ROUTE_READ_TIMEOUT_MS); }),
        ]).finally(() => clearTimeout(timer));
        if (!route) {
          // No answer in time: this session is dropped; the next read (a held call polls) opens another.
          if (this.listener === listener) this.listener = undefined;
          (listener as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
          return;
        }
        this.follow(route);
      } while (this.refreshAgain && !this.closed);
    })().finally(() => { this.refreshing = undefined; });
    return this.refreshing;
  }

  private static signal(): { promise: Promise<void>; resolve: () => void } {
    let resolve!: () => void;
    const promise = new Promise<void>((done) => { resolve = done; });
    return { promise, resolve };
  }

  private routeChanged(): void {
    const adopting = this.route.state === 'streaming' || this.route.state === 'cutover';
    if (adopting) {
      this.warmPools();
      this.warmTimer ??= setInterval(() => this.warmPools(), WARM_POOLS_EVERY_MS).unref();
    } else if (this.warmTimer) {
      clearInterval(this.warmTimer);
      this.warmTimer = undefined;
    }
    const { resolve } = this.routeChange;
    this.routeChange = AdoptingTable.signal();
    resolve();
  }

  private warmPools(): void {
    if (!this.closed) void this.router.warmPools().catch(() => {});
  }

  /**
   * The cutover is near (announceCutover): every router connection to the
   * nodes takes its node's lease and plans a statement on the staged table
   * (all its leaves and their indexes into the session's cache), behind
   * the adopted-table check on the staged name (a partitioned table too: it
   * passes), so that the check is parsed on the connection and compiled in
   * the session. The calls released at the switch then find warm sessions;
   * the staged table keeps its leaves through the switch's rename.
   */
  private warmSessions(schema: string, stagedName: string): void {
    if (this.closed) return;
    const check = { ...this.adoptedCheck, values: [schema, stagedName] };
    void this.router.warmPools(undefined, warmStagedTableSql(schema, stagedName), check).catch(() => {});
  }

  private destination(): 'source' | 'held' | 'sharded' {
    switch (this.route.state) {
      case 'streaming':
      case 'rolled_back':
        return 'source';
      case 'cutover':
      case 'returning':
        return 'held';
      default:
        return 'sharded';
    }
  }

  /** Runs one statement for the row of `key`, wherever the table serves it now. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(key: RoutingKey, sql: string, params: readonly unknown[] = []): Promise<pg.QueryResult<R>> {
    const deadline = performance.now() + this.holdTimeoutMs;
    // The route a node refused this call at: not sent again until a read of the state (or a notification) replaces it.
    let refusedAt: AdoptionRoute | undefined;
    for (;;) {
      // Taken before the state is read: a change while the call is under way wakes the wait below at once.
      const change = this.routeChange.promise;
      const destination = this.destination();
      if (this.route === refusedAt) {
        // Held: nothing new is known since the refusal.
      } else if (destination === 'sharded') {
        // Until forget-source a rollback may give the table back: the nodes check that it is still the sharded one.
        if (this.route.state !== 'switched') return this.router.query<R>(key, sql, params);
        const routed = this.route;
        try {
          return await this.router.query<R>(key, sql, params, this.adoptedCheck);
        } catch (error) {
          if (refusedBy(error) !== ADOPTED_CHECK_NAME || (error as { code?: string }).code !== NOT_ADOPTING_SQLSTATE) throw error;
          // Rolled back (or being rolled back) since this route was read: nothing ran. Read the state, hold the call.
          refusedAt = routed;
          void this.refresh().catch(() => {});
        }
      } else if (destination === 'source') {
        const routed = this.route;
        try {
          return await this.sendToSource<R>(key, sql, params);
        } catch (error) {
          // Fenced: the cutover began after this call was routed. Nothing was written; hold it and send it again.
          const code = (error as { code?: string }).code;
          const checkRefused = error instanceof pg.DatabaseError && (error as { reshardCheckPassed?: boolean }).reshardCheckPassed === false;
          if (code === UNDEFINED_TABLE_SQLSTATE && !checkRefused) {
            // A separate source whose table the switch renamed: stale only if the catalog says the table moved on.
            await this.refresh().catch(() => {});
            if (this.destination() === 'source' && this.route.migrationId === routed.migrationId) throw error;
          } else if (code !== FENCE_SQLSTATE && !checkRefused) {
            throw error;
          }
          // The check refused (the name on that node is no longer the table being adopted): this route is
          // stale; nothing ran. Read the state now and send the call where it says.
          if (checkRefused) {
            refusedAt = routed;
            void this.refresh().catch(() => {});
          }
        }
      }
      if (performance.now() >= deadline) {
        throw new ReshardError('timeout', `a call for ${this.table.name} was held ${this.holdTimeoutMs} ms through its adoption's cutover`, 'retry it; the cutover may have stalled (`reshard status`)');
      }
      // Woken at once when the state changes; else, should a notification not come, the catalog is asked.
      let timer: NodeJS.Timeout | undefined;
      const changed = await Promise.race([
        change.then(() => true),
        new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), HOLD_POLL_MS); }),
      ]);
      clearTimeout(timer);
      // Not awaited: a read under way may loop once more for a later notification, and the call is released by the change itself.
      if (!changed) void this.refresh().catch(() => {});
    }
  }

  /**
   * Sends a call to the old table. On a source that is a node of the
   * cluster, the switch gives the table's name to the sharded parent; the
   * call then goes behind the node's adopting-source check (same round trip,
   * same transaction), which refuses it there instead of letting a stale
   * route read or update the wrong table with no error. On a separate
   * server, the switch renames the table away: the call fails with
   * undefined_table.
   */
  private async sendToSource<R extends pg.QueryResultRow>(key: RoutingKey, sql: string, params: readonly unknown[]): Promise<pg.QueryResult<R>> {
    await this.followSourcesOfMigration();
    const index = this.sourceIndexOf(key);
    const pool = await this.source(index);
    if (this.route.sources[index]?.node === undefined) return pool.query<R>(sql, params as unknown[]);
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      return await new Promise<pg.QueryResult<R>>((resolve, reject) => {
        sendCheckedStatement<R>(client, this.sourceCheck, sql, params, (error, result) => {
          if (error) {
            if (!(error instanceof pg.DatabaseError)) broken = error;
            reject(error);
          } else {
            resolve(result!);
          }
        });
      });
    } finally {
      client.release(broken);
    }
  }

  /** The position of the source that holds `key` until the switch. */
  private sourceIndexOf(key: RoutingKey): number {
    const { sources } = this.route;
    if (sources.length === 1) return 0;
    if (!this.options.sourceFor) {
      throw new ReshardError('bad_input', `${this.table.name} is adopted from ${sources.length} sources: the router cannot tell which holds a key before the switch`,
        'pass sourceFor: (key) => the source\'s position in --from (the application\'s own scheme) to AdoptingTable.connect');
    }
    const chosen = this.options.sourceFor(key);
    const index = typeof chosen === 'number' ? chosen : this.sourceIndexByConnection(chosen);
    if (!Number.isInteger(index) || index < 0 || index >= sources.length) {
      throw new ReshardError('bad_input', `sourceFor gave ${typeof chosen === 'number' ? chosen : 'a connection string that is none of the sources'} for a key of ${this.table.name}, which has ${sources.length} sources`,
        `return a position from 0 to ${sources.length - 1} (the order of --from), or one of the --from connection strings`);
    }
    return index;
  }

  /** Connection strings sourceFor answered, by the position of the source they name (parsed once each). */
  private readonly positionsByConnection = new Map<string, number>();

  private sourceIndexByConnection(connection: string): number {
    let index = this.positionsByConnection.get(connection);
    if (index === undefined) {
      const parsed = parseConnectionHere(connection, 'sourceFor\'s answer');
      index = this.route.sources.findIndex((source) => sameServerDatabase(source.connection, parsed));
      if (index >= 0) this.positionsByConnection.set(connection, index);
    }
    return index;
  }

  /** Another adoption of the table: its sources may be other servers, so the pools and positions of the last one go. */
  private async followSourcesOfMigration(): Promise<void> {
    if (this.poolsOfMigration === this.route.migrationId) return;
    await this.endSourcePools();
    this.positionsByConnection.clear();
    this.poolsOfMigration = this.route.migrationId;
  }

  private async source(index: number): Promise<pg.Pool> {
    const open = this.sourcePools.get(index);
    if (open) return open;
    const connection = { ...this.route.sources[index]!.connection, ...(this.options.sourcePassword !== undefined ? { password: this.options.sourcePassword } : {}) };
    const config = await negotiatedClientConfig(connection, 'reshard adopting table', `the adopted table's source ${index + 1}`);
    const raced = this.sourcePools.get(index);
    if (raced) return raced;
    const pool = new pg.Pool({ ...config, max: this.options.poolSize ?? 4, idleTimeoutMillis: POOL_IDLE_MS });
    pool.on('error', () => {});
    this.sourcePools.set(index, pool);
    return pool;
  }

  private async endSourcePools(): Promise<void> {
    const pools = [...this.sourcePools.values()];
    this.sourcePools = new Map();
    await Promise.all(pools.map((pool) => pool.end().catch(() => {})));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.warmTimer);
    await this.listener?.end().catch(() => {});
    await this.endSourcePools();
  }
}

/** The node check that refused a call (sendCheckedStatement's `reshardRefusedBy`), on the router's error or its cause. */
function refusedBy(error: unknown): string | undefined {
  const own = (error as { reshardRefusedBy?: string } | undefined)?.reshardRefusedBy;
  return own ?? ((error as { cause?: { reshardRefusedBy?: string } } | undefined)?.cause)?.reshardRefusedBy;
}

/** Whether two connections reach the same database of the same server, as written (host, port, database). */
function sameServerDatabase(a: ConnectionSettings, b: ConnectionSettings): boolean {
  return a.host === b.host && a.port === b.port && a.database === b.database;
}
