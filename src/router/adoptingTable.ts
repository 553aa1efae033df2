import pg from 'pg';
import { adoptionRoute, type AdoptionRoute } from '../catalog/adoptions.js';
import { listenForSlotMapChanges } from '../catalog/routerMapReads.js';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { connectTo, negotiatedClientConfig } from '../plumbing/connectTo.js';
import { parseConnectionHere } from '../plumbing/conninfoSources.js';
import { FENCE_SQLSTATE } from '../node/nodeHelpers.js';
import { ROUTER_HOLD_TIMEOUT_MS_DEFAULT, type Router, type RoutingKey } from './router.js';

export interface AdoptingTableOptions {
  /** The catalog (as for the router). */
  catalog: ConnectionSettings | string;
  table: string;
  schema?: string;
  /** The old table's server's password, if libpq's conventions do not give it. */
  sourcePassword?: string;
  /** Longest a call waits through the cutover (or a rollback) before it fails with a retryable error. */
  holdTimeoutMs?: number;
  poolSize?: number;
}

/** How often a held call asks the catalog whether the cutover is over, besides the notifications. */
const HOLD_POLL_MS = 25;

/**
 * Routes one table through its adoption (`reshard table adopt`): to the old
 * table until the switch, held through the cutover (as a frozen slot's
 * calls are), then by slot through the router — and back to the old table
 * after a rollback. The old table's fence (RSM01) means "the cutover has
 * begun": the call is held and sent again once the table is switched, so an
 * application on this path sees no error. One source only: the router cannot
 * know how an application spread rows over several (it keeps its own routing
 * until the switch, then uses the router).
 */
export class AdoptingTable {
  private route: AdoptionRoute = { state: 'none', sources: [] };
  private sourcePool: pg.Pool | undefined;
  private listener: pg.Client | undefined;
  private closed = false;
  private readonly holdTimeoutMs: number;
  private readonly catalog: ConnectionSettings;
  private readonly table: { schema: string; name: string };

  private constructor(private readonly router: Router, private readonly options: AdoptingTableOptions) {
    this.holdTimeoutMs = options.holdTimeoutMs ?? ROUTER_HOLD_TIMEOUT_MS_DEFAULT;
    this.catalog = typeof options.catalog === 'string' ? parseConnectionHere(options.catalog, 'the catalog option') : options.catalog;
    this.table = { schema: options.schema ?? 'public', name: options.table };
  }

  static async connect(router: Router, options: AdoptingTableOptions): Promise<AdoptingTable> {
    const table = new AdoptingTable(router, options);
    try {
      table.listener = await connectTo({ role: 'the catalog', connection: table.catalog }, 'reshard adopting table');
      await listenForSlotMapChanges(table.listener);
      table.listener.on('notification', () => { void table.refresh().catch(() => {}); });
      await table.refresh();
    } catch (error) {
      await table.close();
      throw error;
    }
    return table;
  }

  /** Where calls go now: the old table, held, or the sharded table. */
  get state(): AdoptionRoute['state'] {
    return this.route.state;
  }

  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;

  /** Reads the table's adoption state; one read at a time on the listening session (a notification and a held call may both ask). */
  private refresh(): Promise<void> {
    if (!this.listener || this.closed) return Promise.resolve();
    if (this.refreshing) {
      // A read already under way may have begun before this change: read once more after it.
      this.refreshAgain = true;
      return this.refreshing;
    }
    const listener = this.listener;
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        this.route = await adoptionRoute(listener, this.table);
      } while (this.refreshAgain && !this.closed);
    })().finally(() => { this.refreshing = undefined; });
    return this.refreshing;
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
    for (;;) {
      const destination = this.destination();
      if (destination === 'sharded') return this.router.query<R>(key, sql, params);
      if (destination === 'source') {
        try {
          return await (await this.source()).query<R>(sql, params as unknown[]);
        } catch (error) {
          // Fenced: the cutover began after this call was routed. Nothing was written; hold it and send it again.
          if ((error as { code?: string }).code !== FENCE_SQLSTATE) throw error;
        }
      }
      if (performance.now() >= deadline) {
        throw new ReshardError('timeout', `a call for ${this.table.name} was held ${this.holdTimeoutMs} ms through its adoption's cutover`, 'retry it; the cutover may have stalled (`reshard status`)');
      }
      await new Promise((resolve) => setTimeout(resolve, HOLD_POLL_MS));
      await this.refresh();
    }
  }

  private async source(): Promise<pg.Pool> {
    if (this.sourcePool) return this.sourcePool;
    if (this.route.sources.length !== 1) {
      throw new ReshardError('unsupported', `${this.table.name} is adopted from ${this.route.sources.length} sources: the router cannot tell which holds a key before the switch`,
        'keep the application\'s own routing until the adoption switches, then use the router');
    }
    const connection = { ...this.route.sources[0]!.connection, ...(this.options.sourcePassword !== undefined ? { password: this.options.sourcePassword } : {}) };
    const config = await negotiatedClientConfig(connection, 'reshard adopting table', 'the adopted table\'s source');
    this.sourcePool = new pg.Pool({ ...config, max: this.options.poolSize ?? 4 });
    this.sourcePool.on('error', () => {});
    return this.sourcePool;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => {});
    await this.sourcePool?.end().catch(() => {});
  }
}
