import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { waitFor } from '../../src/plumbing/waitFor.js';
import { AdoptingTable, Router } from '../../src/router/index.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';

/**
 * A table spread `id mod 3` by the application over the cluster's own three
 * nodes, adopted with `--from n1,n2,n3` while the application writes only
 * through `AdoptingTable` with `sourceFor` (its own scheme until the switch);
 * then the same kind of adoption taken back after its switch.
 */

const SLOTS = 32;
const SEED_PER_SOURCE = 3000;


/** A writer's acknowledged work: the ids it inserted, the increments of its own counter row. */
interface WriterTally { inserted: number[]; increments: number; errors: string[] }

/** Inserts a new row and increments its counter row, round after round, through `adopting`, until stopped. */
function startWriter(adopting: AdoptingTable, table: string, counterId: number, firstId: number): { tally: WriterTally; stop: () => Promise<void> } {
  const tally: WriterTally = { inserted: [], increments: 0, errors: [] };
  let running = true;
  const loop = (async () => {
    let next = firstId;
    while (running && tally.errors.length < 20) {
      const id = next++;
      try {
        await adopting.query(id, `INSERT INTO ${table} (id, balance, note) VALUES ($1, 0, 'new')`, [id]);
        tally.inserted.push(id);
      } catch (error) {
        tally.errors.push(`insert ${id}: ${(error as Error).message}`);
      }
      try {
        const updated = await adopting.query(counterId, `UPDATE ${table} SET balance = balance + 1 WHERE id = $1`, [counterId]);
        if (updated.rowCount === 1) tally.increments++;
        else tally.errors.push(`counter ${counterId}: ${updated.rowCount} rows updated`);
      } catch (error) {
        tally.errors.push(`counter ${counterId}: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
  })();
  return { tally, stop: async () => { running = false; await loop; } };
}

/** Every row of `table` on each server, by id: where it is and its balance. */
async function rowsOn(servers: readonly LocalServer[], table: string): Promise<Map<number, { server: number; balance: number; note: string }[]>> {
  const byId = new Map<number, { server: number; balance: number; note: string }[]>();
  for (const [index, server] of servers.entries()) {
    const found = await sql(server, `SELECT id::int AS id, balance::int AS balance, note FROM ${table}`);
    for (const row of found.rows as { id: number; balance: number; note: string }[]) {
      byId.set(row.id, [...(byId.get(row.id) ?? []), { server: index, balance: row.balance, note: row.note }]);
    }
  }
  return byId;
}

describe('multi-source adoption through the router (AdoptingTable with sourceFor)', () => {
  let cluster: TestServers;
  let nodes: LocalServer[];
  let access: ClusterAccess;
  let env: Record<string, string>;
  beforeAll(async () => {
    // Three nodes; the fourth server is added as a node only in the last test.
    cluster = await startTestServers(4, 'adoptmulti');
    nodes = cluster.servers.slice(0, 3);
    access = { catalog: nodes[0]!.connection, passwords: noPasswords };
    env = { RESHARD_CATALOG: catalogUrl(nodes[0]!.connection) };
    await initCluster(access, SLOTS);
    for (const [index, node] of nodes.entries()) await addNode(access, { name: `n${index + 1}`, connection: node.connection });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  /** The table on each node, rows with id mod 3 = the node's position (the application's scheme). */
  async function seed(table: string): Promise<void> {
    for (const [index, node] of nodes.entries()) {
      await sql(node, `CREATE TABLE ${table} (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text NOT NULL)`);
      await sql(node, `INSERT INTO ${table} SELECT g, 0, 'seed' FROM generate_series(1, ${3 * SEED_PER_SOURCE}) g WHERE g % 3 = ${index}`);
    }
  }

  const from = (): string => nodes.map((node) => catalogUrl(node.connection)).join(',');

  it('writers only through AdoptingTable: to each key\'s source until the switch, held through the cutover, then by slot — 0 errors, every acknowledged write once', async () => {
    await seed('orders');
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt multi-source', holdTimeoutMs: 60_000 });
    // The application's scheme: id mod 3 is the position in --from; one writer also names its source by connection string.
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'orders', holdTimeoutMs: 60_000, sourceFor: (key) => Number(key) % 3 });
    const byUrl = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'orders', holdTimeoutMs: 60_000, sourceFor: (key) => catalogUrl(nodes[Number(key) % 3]!.connection) });
    // Counter rows 3, 4, 5: one on each source.
    const counters = [3, 4, 5];
    const writers: ReturnType<typeof startWriter>[] = [];
    let adopted;
    try {
      const adoption = runCli(['table', 'adopt', 'orders', '--from', from(), '--key', 'id', '--json'], env, 300_000);
      await waitFor('the adoption recorded', async () => (adopting.state === 'streaming' && byUrl.state === 'streaming' ? true : undefined),
        { timeoutMs: 60_000, pollMs: 5, fix: 'the adoption did not start' });
      writers.push(
        startWriter(adopting, 'orders', counters[0]!, 1_000_000),
        startWriter(adopting, 'orders', counters[1]!, 2_000_000),
        startWriter(byUrl, 'orders', counters[2]!, 3_000_000),
      );
      adopted = await adoption;
      // On through the switch and after it.
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      for (const writer of writers) await writer.stop();
      await adopting.close();
      await byUrl.close();
      await router.close();
    }
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);
    for (const writer of writers) expect(writer.tally.errors.slice(0, 3)).toEqual([]);
    const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
    expect(acknowledged.length).toBeGreaterThan(30);

    const byId = await rowsOn(nodes, 'orders');
    const { owners } = await withCatalog(access, async (catalog) => readSlotMap(catalog));
    expect(byId.size).toBe(3 * SEED_PER_SOURCE + acknowledged.length);
    for (const [id, copies] of byId) {
      expect(copies.length, `id ${id} once`).toBe(1);
      expect(`n${copies[0]!.server + 1}`, `id ${id} on its slot's owner`).toBe(owners[slotOf('bigint', id, SLOTS)]);
    }
    for (const id of acknowledged) expect(byId.has(id), `acknowledged insert ${id}`).toBe(true);
    for (const [index, writer] of writers.entries()) expect(byId.get(counters[index]!)![0]!.balance, `counter ${counters[index]}`).toBe(writer.tally.increments);

    // Before the switch the writes went where sourceFor said: each kept old table holds new ids of its own residue only.
    const migration = (await sql(nodes[0]!, "SELECT max(migration_id)::int AS id FROM reshard.adoption WHERE table_name = 'orders'")).rows[0].id as number;
    let beforeSwitch = 0;
    for (const [index, node] of nodes.entries()) {
      const kept = (await sql(node, `SELECT id::int AS id FROM "orders__adopted_m${migration}" WHERE id >= 1000000`)).rows as { id: number }[];
      for (const { id } of kept) expect(id % 3, `new id ${id} on source ${index}`).toBe(index);
      beforeSwitch += kept.length;
    }
    expect(beforeSwitch).toBeGreaterThan(0);
    expect(beforeSwitch).toBeLessThan(acknowledged.length);
  }, 400_000);

  it('refuses a --source-of rule that places a row of a source elsewhere, or is not SQL over the key, before anything changes', async () => {
    await seed('ruled');
    const migrations = (await sql(nodes[0]!, 'SELECT count(*)::int AS n FROM reshard.migration')).rows[0].n as number;
    const wrong = await runCli(['table', 'adopt', 'ruled', '--from', from(), '--key', 'id', '--source-of', 'id % 2'], env, 120_000);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toMatch(/--source-of "id % 2" gives 1 for key \d+, which source 0 \(node n1\) holds.*Fix: give the rule the position/);
    const notSql = await runCli(['table', 'adopt', 'ruled', '--from', from(), '--key', 'id', '--source-of', 'balance % 3'], env, 120_000);
    expect(notSql.code).not.toBe(0);
    expect(notSql.stderr).toMatch(/--source-of "balance % 3" is not a SQL expression over id alone/);
    expect((await sql(nodes[0]!, 'SELECT count(*)::int AS n FROM reshard.migration')).rows[0].n).toBe(migrations);
    for (const node of nodes) expect((await sql(node, "SELECT to_regclass('ruled__adopting') IS NULL AS gone")).rows[0].gone).toBe(true);
  }, 200_000);

  it('rolls a multi-source adoption back after its switch: every write since goes to its key\'s source (old keys where they were, new ones by --source-of), 0 errors through AdoptingTable', async () => {
    await seed('ledger');
    const adopted = await runCli(['table', 'adopt', 'ledger', '--from', from(), '--key', 'id', '--source-of', 'id % 3', '--json'], env, 300_000);
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt multi-source rollback', holdTimeoutMs: 60_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'ledger', holdTimeoutMs: 60_000, sourceFor: (key) => Number(key) % 3 });
    expect(adopting.state).toBe('switched');
    // Written on the nodes after the switch: an update of a row from source 1, a delete of one from source 2.
    await adopting.query(10, 'UPDATE ledger SET note = $2 WHERE id = $1', [10, 'changed after the switch']);
    await adopting.query(11, 'DELETE FROM ledger WHERE id = $1', [11]);
    const counters = [21, 22, 23];
    const writers = counters.map((counter, index) => startWriter(adopting, 'ledger', counter, 7_000_000 + index * 100_000));
    let rolledBack;
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      rolledBack = await runCli(['rollback', '--json'], env, 300_000);
      await waitFor('the rollback seen by the router', async () => (adopting.state === 'rolled_back' ? true : undefined), { timeoutMs: 10_000, pollMs: 5, fix: 'no notification' });
      // On after the rollback: through sourceFor to the old tables again.
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      for (const writer of writers) await writer.stop();
      await adopting.close();
      await router.close();
    }
    expect(rolledBack.stderr).toBe('');
    expect(rolledBack.code).toBe(0);
    const outcome = JSON.parse(rolledBack.stdout.trim().split('\n').pop()!) as { outcome: string; new_keys: number; new_keys_to: string };
    expect(outcome).toMatchObject({ outcome: 'returned', new_keys_to: 'the source rule' });
    expect(outcome.new_keys).toBeGreaterThan(0);
    for (const writer of writers) expect(writer.tally.errors.slice(0, 3)).toEqual([]);
    const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
    expect(acknowledged.length).toBeGreaterThan(10);

    // Each source serves its own table again, and holds exactly its keys: every row once, on source id % 3.
    const byId = await rowsOn(nodes, 'ledger');
    expect(byId.size).toBe(3 * SEED_PER_SOURCE - 1 + acknowledged.length);
    for (const [id, copies] of byId) {
      expect(copies.length, `id ${id} once`).toBe(1);
      expect(copies[0]!.server, `id ${id} on its source`).toBe(id % 3);
    }
    for (const id of acknowledged) expect(byId.has(id), `acknowledged insert ${id}`).toBe(true);
    expect(byId.get(10)![0]!.note).toBe('changed after the switch');
    expect(byId.has(11)).toBe(false);
    for (const [index, writer] of writers.entries()) expect(byId.get(counters[index]!)![0]!.balance, `counter ${counters[index]}`).toBe(writer.tally.increments);
    for (const node of nodes) {
      expect((await sql(node, "SELECT relkind::text AS kind FROM pg_class WHERE oid = 'ledger'::regclass")).rows[0].kind).toBe('r');
      expect((await sql(node, "SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'ledger\\_\\_%'")).rows[0].n).toBe(0);
    }
    expect((await sql(nodes[0]!, "SELECT count(*)::int AS n FROM reshard.sharded_table WHERE table_name = 'ledger'")).rows[0].n).toBe(0);
  }, 400_000);

  it('refuses node add and node remove while an adoption is unfinished (interrupted mid-copy), one line each, and allows them once it is resumed', async () => {
    await seed('paused');
    const child = spawn(process.execPath, [RESHARD_BIN, 'table', 'adopt', 'paused', '--from', from(), '--key', 'id', '--catalog', env.RESHARD_CATALOG!], { stdio: ['ignore', 'pipe', 'ignore'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('step stream\n')) child.kill('SIGKILL');
    });
    await exited;
    expect(output).toContain('step stream');
    const fourth = cluster.servers[3]!;
    const added = await runCli(['node', 'add', 'n4', '--url', catalogUrl(fourth.connection)], env, 120_000);
    expect(added.code).not.toBe(0);
    expect(added.stderr.trim().split('\n')).toHaveLength(1);
    expect(added.stderr).toMatch(/cannot add node "n4" while adoption \d+ of paused is unfinished.*Fix: let it finish/);
    const removed = await runCli(['node', 'remove', 'n3'], env, 120_000);
    expect(removed.code).not.toBe(0);
    expect(removed.stderr).toMatch(/cannot remove node "n3" while adoption \d+ of paused is unfinished/);
    expect((await sql(nodes[0]!, "SELECT count(*)::int AS n FROM reshard.node WHERE name = 'n4'")).rows[0].n).toBe(0);
    expect((await sql(nodes[0]!, "SELECT state FROM reshard.node WHERE name = 'n3'")).rows[0].state).toBe('active');

    const resumed = await runCli(['resume', '--json'], env, 300_000);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    const addedAfter = await runCli(['node', 'add', 'n4', '--url', catalogUrl(fourth.connection)], env, 120_000);
    expect(addedAfter.stderr).toBe('');
    expect(addedAfter.code).toBe(0);
    // The node added after the switch has the adopted table's parent (no slots yet).
    expect((await sql(fourth, "SELECT relkind::text AS kind FROM pg_class WHERE oid = 'paused'::regclass")).rows[0].kind).toBe('p');
  }, 400_000);
});
