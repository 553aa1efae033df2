import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { AdoptingTable, Router } from '../../src/router/index.js';
import { createEmptyCluster } from '../support/cluster.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';
import { TcpProxy } from '../support/tcpProxy.js';

const SLOTS = 16;
const ROWS = 12_000;
/** Keys the test writes, per owning node: some on each node, so some on a node that is not the key's old home. */
const KEYS_PER_OWNER = 6;

/**
 * An AdoptingTable that misses its table's rollback (its catalog link
 * stalls from before `reshard rollback` until after it) still believes the
 * table switched and sends calls by slot through the router. After the
 * rollback the sharded table is gone and the old table is the truth again:
 * under the table's own name on a node source (where a call by slot would
 * read or update the plain table of whichever node owns the key's slot), or
 * on a separate server (the nodes no longer have the name). Each such call
 * must be refused by the node, held until the AdoptingTable reads the
 * rollback, and then applied once to the old table, with no error.
 */
describe('a stale AdoptingTable after a rollback: refused by the nodes, then served by the old table', () => {
  let cluster: TestServers;
  let nodes: LocalServer[];
  let access: ClusterAccess;
  let env: Record<string, string>;
  beforeAll(async () => {
    // Three nodes; the fourth server is a separate source.
    cluster = await startTestServers(4, 'adoptstalerb');
    nodes = cluster.servers.slice(0, 3);
    access = await createEmptyCluster(nodes, 3, SLOTS);
    env = { RESHARD_CATALOG: catalogUrl(access.catalog) };
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  interface Scenario {
    table: string;
    sources: () => LocalServer[];
    /** The position (in --from) of the source that holds key `id`. */
    sourceOf: (id: number) => number;
  }

  async function staleCallsAfterRollback(scenario: Scenario): Promise<void> {
    const { table } = scenario;
    const sources = scenario.sources();
    for (const [index, source] of sources.entries()) {
      await sql(source, `CREATE TABLE ${table} (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)`);
      const mine = sources.length === 1 ? '' : ` WHERE g % ${sources.length} = ${index}`;
      await sql(source, `INSERT INTO ${table} SELECT g, 100 FROM generate_series(1, ${ROWS}) g${mine}`);
    }
    const rule = sources.length === 1 ? [] : ['--source-of', `id % ${sources.length}`];
    const adopted = await runCli(['table', 'adopt', table, '--from', sources.map((source) => catalogUrl(source.connection)).join(','), '--key', 'id', ...rule, '--json'], env, 300_000);
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);

    const catalogLink = await TcpProxy.start(access.catalog.port);
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: `stale rollback ${table}`, holdTimeoutMs: 30_000 });
    const adopting = await AdoptingTable.connect(router, {
      catalog: { ...access.catalog, port: catalogLink.port }, table, holdTimeoutMs: 60_000,
      ...(sources.length === 1 ? {} : { sourceFor: (key) => scenario.sourceOf(Number(key)) }),
    });
    const { owners } = await withCatalog(access, async (catalog) => readSlotMap(catalog));
    const ids = ['n1', 'n2', 'n3'].flatMap((owner) => Array.from({ length: 600 }, (_, index) => index + 1)
      .filter((id) => owners[slotOf('bigint', id, SLOTS)] === owner).slice(0, KEYS_PER_OWNER));
    expect(ids.length).toBe(3 * KEYS_PER_OWNER);
    let settledWhileStale = 0;
    try {
      expect(adopting.state).toBe('switched');
      // Served by slot while switched: the router path works (and its node sessions are open).
      for (const id of ids) expect((await adopting.query(id, `SELECT balance FROM ${table} WHERE id = $1`, [id])).rowCount).toBe(1);
      // The link goes quiet: this AdoptingTable hears nothing of the rollback.
      catalogLink.stall();
      const rolledBack = await runCli(['rollback', '--json'], env, 300_000);
      expect(rolledBack.stderr).toBe('');
      expect(rolledBack.code).toBe(0);
      expect(adopting.state).toBe('switched');

      const calls = ids.map(async (id) => {
        try {
          const updated = await adopting.query(id, `UPDATE ${table} SET balance = balance + 1 WHERE id = $1`, [id]);
          const read = await adopting.query<{ balance: string }>(id, `SELECT balance::text AS balance FROM ${table} WHERE id = $1`, [id]);
          return { id, updated: updated.rowCount, read: read.rows.map((row) => row.balance) };
        } catch (error) {
          return { id, error: `${(error as { code?: string }).code}: ${(error as Error).message}` };
        } finally {
          settledWhileStale += catalogLink.current === 'stall' ? 1 : 0;
        }
      });
      // Refused by the nodes and held: none completes (or fails) while the AdoptingTable cannot read the rollback.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      catalogLink.heal();
      const results = await Promise.all(calls);
      expect(results.filter((result) => 'error' in result)).toEqual([]);
      for (const result of results) expect(result, `id ${result.id}`).toEqual({ id: result.id, updated: 1, read: ['101'] });
      expect(settledWhileStale).toBe(0);
      expect(adopting.state).toBe('rolled_back');
    } finally {
      await adopting.close();
      await router.close();
      await catalogLink.close();
    }
    // The old tables hold every row once, each write applied exactly once; the nodes hold no sharded copy.
    const written = new Set(ids);
    for (const [index, source] of sources.entries()) {
      const rows = (await sql(source, `SELECT id::int AS id, balance::int AS balance FROM ${table}`)).rows as { id: number; balance: number }[];
      const expected = Array.from({ length: ROWS }, (_, at) => at + 1).filter((id) => sources.length === 1 || scenario.sourceOf(id) === index);
      expect(rows.length, `rows on source ${index}`).toBe(expected.length);
      for (const row of rows) expect(row.balance, `id ${row.id}`).toBe(written.has(row.id) ? 101 : 100);
    }
    for (const node of nodes) {
      const kind = (await sql(node, `SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass('${table}')) AS kind`)).rows[0].kind as string | null;
      expect(kind === null || kind === 'r', `${table} on a node is no sharded table`).toBe(true);
    }
  }

  it('on a node source (the old table back under its own name on one node)', async () => {
    await staleCallsAfterRollback({ table: 'ledger_node', sources: () => [nodes[1]!], sourceOf: () => 0 });
  }, 400_000);

  it('on a separate source server (the nodes no longer have the name)', async () => {
    await staleCallsAfterRollback({ table: 'ledger_apart', sources: () => [cluster.servers[3]!], sourceOf: () => 0 });
  }, 400_000);

  it('on the nodes themselves, spread id mod 3 (each node has a plain table of that name again, holding other keys)', async () => {
    await staleCallsAfterRollback({ table: 'ledger_multi', sources: () => nodes, sourceOf: (id) => id % 3 });
  }, 400_000);
});
