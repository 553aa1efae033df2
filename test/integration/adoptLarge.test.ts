import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { waitFor } from '../../src/plumbing/waitFor.js';
import { AdoptingTable, Router } from '../../src/router/index.js';
import { createEmptyCluster } from '../support/cluster.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';

const SLOTS = 32;
const ROWS = 1_000_000;


/** A writer's acknowledged work: ids it inserted, and increments of its own counter row. */
interface WriterTally { inserted: number[]; increments: number; fencedErrors: number; otherErrors: string[] }

/**
 * Writes until `stop()`: each round inserts a new row and increments the
 * writer's counter row. `send` runs one statement; it returns false when the
 * writer must stop (a direct writer fenced).
 */
function startWriter(counterId: number, firstId: number, send: (key: number, text: string, params: unknown[]) => Promise<'ok' | 'fenced'>): { tally: WriterTally; stop: () => Promise<void> } {
  const tally: WriterTally = { inserted: [], increments: 0, fencedErrors: 0, otherErrors: [] };
  let running = true;
  const loop = (async () => {
    let next = firstId;
    while (running) {
      try {
        const id = next++;
        const inserted = await send(id, 'INSERT INTO accounts (id, balance, note) VALUES ($1, 0, $2)', [id, `w${counterId}`]);
        if (inserted === 'fenced') { tally.fencedErrors++; return; }
        tally.inserted.push(id);
        const incremented = await send(counterId, 'UPDATE accounts SET balance = balance + 1 WHERE id = $1', [counterId]);
        if (incremented === 'fenced') { tally.fencedErrors++; return; }
        tally.increments++;
      } catch (error) {
        tally.otherErrors.push((error as Error).message);
        if (tally.otherErrors.length > 20) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  return { tally, stop: async () => { running = false; await loop; } };
}

async function directSend(pool: pg.Pool, text: string, params: unknown[]): Promise<'ok' | 'fenced'> {
  try {
    await pool.query(text, params);
    return 'ok';
  } catch (error) {
    if ((error as { code?: string }).code === 'RSM01') return 'fenced';
    throw error;
  }
}

/** The counters' balances, from whichever node holds each. */
async function shardedRows(nodes: readonly LocalServer[], ids: readonly number[]): Promise<Map<number, number>> {
  const byId = new Map<number, number>();
  for (const node of nodes) {
    const result = await sql(node, 'SELECT id::int AS id, balance::int AS balance FROM accounts WHERE id = ANY ($1::bigint[])', [ids]);
    for (const row of result.rows as { id: number; balance: number }[]) byId.set(row.id, row.balance);
  }
  return byId;
}

describe('reshard table adopt at scale: 1M rows under 8 writers', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let env: Record<string, string>;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'adoptbig');
    access = await createEmptyCluster(cluster.servers, 3, SLOTS);
    env = { RESHARD_CATALOG: catalogUrl(access.catalog) };
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('adopts a 1M-row table from a separate server under 8 writers (4 routed, 4 direct): every acknowledged write exactly once, counters exact', async () => {
    const source = cluster.servers[3]!;
    const nodes = cluster.servers.slice(0, 3);
    await sql(source, 'CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)');
    await sql(source, `INSERT INTO accounts SELECT g, 0, 'seed ' || g FROM generate_series(1, ${ROWS}) g`);
    const counters = [1, 2, 3, 4, 5, 6, 7, 8];
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt 1M', holdTimeoutMs: 60_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'accounts', holdTimeoutMs: 120_000 });
    const directPool = new pg.Pool({ ...source.connection, max: 4 });
    const routedSend = async (key: number, text: string, params: unknown[]): Promise<'ok' | 'fenced'> => {
      await adopting.query(key, text, params);
      return 'ok';
    };
    const direct = counters.slice(4).map((counter) => startWriter(counter, counter * 1_000_000_000, (_key, text, params) => directSend(directPool, text, params)));
    const routed: ReturnType<typeof startWriter>[] = [];
    let adopted;
    const startedMs = performance.now();
    try {
      const adopting$ = runCli(['table', 'adopt', 'accounts', '--from', catalogUrl(source.connection), '--key', 'id', '--json'], env, 1_200_000);
      await waitFor('the adoption recorded', async () => (adopting.state === 'streaming' ? true : undefined), { timeoutMs: 60_000, pollMs: 5, fix: 'the adoption did not start' });
      routed.push(...counters.slice(0, 4).map((counter) => startWriter(counter, counter * 1_000_000_000, routedSend)));
      adopted = await adopting$;
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      for (const writer of [...routed, ...direct]) await writer.stop();
      await adopting.close();
      await router.close();
      await directPool.end();
    }
    const seconds = (performance.now() - startedMs) / 1000;
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);
    const writers = [...routed, ...direct];
    for (const writer of writers) expect(writer.tally.otherErrors.slice(0, 3)).toEqual([]);
    for (const writer of direct) expect(writer.tally.fencedErrors).toBe(1);
    for (const writer of routed) expect(writer.tally.fencedErrors).toBe(0);

    // Every row once, on its owner: counted per node by slot, without pulling 1M rows into the test.
    const { owners } = await withCatalog(access, async (catalog) => readSlotMap(catalog));
    const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
    let total = 0;
    for (const [index, node] of nodes.entries()) {
      total += (await sql(node, 'SELECT count(*)::int AS n FROM accounts')).rows[0].n as number;
      const distinct = (await sql(node, 'SELECT count(DISTINCT id)::int AS n FROM accounts')).rows[0].n as number;
      const all = (await sql(node, 'SELECT count(*)::int AS n FROM accounts')).rows[0].n as number;
      expect(distinct).toBe(all);
      const mine = acknowledged.filter((id) => owners[slotOf('bigint', id, SLOTS)] === `n${index + 1}`);
      const found = (await sql(node, 'SELECT count(*)::int AS n FROM accounts WHERE id = ANY ($1::bigint[])', [mine])).rows[0].n as number;
      expect(found).toBe(mine.length);
    }
    expect(total).toBe(ROWS + acknowledged.length);
    const byId = await shardedRows(nodes.map((node) => node), counters);
    for (const [index, writer] of writers.entries()) expect(byId.get(counters[index]!), `counter ${counters[index]}`).toBe(writer.tally.increments);
    console.log(`adopted ${ROWS} rows in ${seconds.toFixed(1)} s under 8 writers (${acknowledged.length} inserts acknowledged)`);
  }, 1_500_000);
});
