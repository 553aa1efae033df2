import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { waitFor } from '../../src/plumbing/waitFor.js';
import { AdoptingTable, Router } from '../../src/router/index.js';
import { createEmptyCluster } from '../support/cluster.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';
import { TcpProxy } from '../support/tcpProxy.js';

const SLOTS = 16;
const ROWS = 60_000;

/**
 * An AdoptingTable that misses its table's switch (its catalog link stalls
 * through the whole cutover, as for a process stopped that long) still sends
 * calls to the old table's node. There the switch gave the name to the
 * sharded parent: without a check, an UPDATE or a SELECT of a key another
 * node owns would match 0 rows with no error.
 */
describe('a stale AdoptingTable cannot reach the sharded table that took the old table\'s name', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let env: Record<string, string>;
  beforeAll(async () => {
    cluster = await startTestServers(3, 'adoptstale');
    access = await createEmptyCluster(cluster.servers, 3, SLOTS);
    env = { RESHARD_CATALOG: catalogUrl(access.catalog) };
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses its calls on the node source after the switch, holds them, and serves them by slot once it reads the switch', async () => {
    const source = cluster.servers[1]!;
    await sql(source, 'CREATE TABLE ledger (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)');
    await sql(source, `INSERT INTO ledger SELECT g, 100 FROM generate_series(1, ${ROWS}) g`);
    const catalogLink = await TcpProxy.start(access.catalog.port);
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'stale adopting table test', holdTimeoutMs: 30_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: { ...access.catalog, port: catalogLink.port }, table: 'ledger', holdTimeoutMs: 60_000 });
    try {
      const adoption = runCli(['table', 'adopt', 'ledger', '--from', catalogUrl(source.connection), '--key', 'id', '--json'], env, 300_000);
      // The table streams from its old home: the link goes quiet, so this router hears nothing of the cutover or the switch.
      await waitFor('the adoption to stream', async () => (adopting.state === 'streaming' ? true : undefined), { timeoutMs: 60_000, pollMs: 1, fix: 'the adoption did not start' });
      catalogLink.stall();
      const adopted = await adoption;
      expect(adopted.stderr).toBe('');
      expect(adopted.code).toBe(0);
      expect(adopting.state).toBe('streaming');

      // Keys of slots the source node no longer owns: there the name `ledger` is the sharded parent now.
      const { owners } = await withCatalog(access, async (catalog) => readSlotMap(catalog));
      const elsewhere = Array.from({ length: 400 }, (_, index) => index + 1).filter((id) => owners[slotOf('bigint', id, SLOTS)] !== 'n2').slice(0, 20);
      const onSource = Array.from({ length: 400 }, (_, index) => index + 1).filter((id) => owners[slotOf('bigint', id, SLOTS)] === 'n2').slice(0, 5);
      expect(elsewhere.length).toBe(20);
      expect(onSource.length).toBe(5);
      let settled = 0;
      const calls = [...elsewhere, ...onSource].map(async (id) => {
        const updated = await adopting.query(id, 'UPDATE ledger SET balance = balance + 1 WHERE id = $1', [id]);
        const read = await adopting.query<{ balance: string }>(id, 'SELECT balance::text AS balance FROM ledger WHERE id = $1', [id]);
        settled++;
        return { id, updated: updated.rowCount, read: read.rows.map((row) => row.balance) };
      });
      // Refused by the node and held: none of them completes while the router cannot learn the switch.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(settled).toBe(0);
      catalogLink.heal();
      const results = await Promise.all(calls);
      expect(adopting.state).toBe('switched');
      for (const result of results) expect(result, `id ${result.id}`).toEqual({ id: result.id, updated: 1, read: ['101'] });
    } finally {
      await adopting.close();
      await router.close();
      await catalogLink.close();
    }
    // Every row is where its slot's owner is, once, and incremented exactly once where the test wrote.
    const total = await Promise.all(cluster.servers.map(async (server) => (await sql(server, 'SELECT count(*)::int AS n, sum(balance)::bigint::text AS sum FROM ledger')).rows[0] as { n: number; sum: string }));
    expect(total.reduce((sum, node) => sum + node.n, 0)).toBe(ROWS);
    expect(total.reduce((sum, node) => sum + BigInt(node.sum), 0n)).toBe(BigInt(ROWS) * 100n + 25n);
  }, 400_000);
});
