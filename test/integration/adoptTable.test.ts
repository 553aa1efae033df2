import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import { slotOfKeySql } from '../../src/node/adoptSource.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { waitFor } from '../../src/plumbing/waitFor.js';
import { AdoptingTable, Router } from '../../src/router/index.js';
import { createEmptyCluster } from '../support/cluster.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';

const SLOTS = 32;
const ROWS = 20_000;


async function withTimeoutPromise(work: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise<void>((_, reject) => { timer = setTimeout(() => reject(new Error(`not within ${timeoutMs} ms`)), timeoutMs); })]);
  clearTimeout(timer);
}

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

/** Rows of `accounts` on every node (the sharded parent), by id. */
async function shardedRows(nodes: readonly LocalServer[]): Promise<Map<number, { balance: number; node: number }[]>> {
  const byId = new Map<number, { balance: number; node: number }[]>();
  for (const [index, node] of nodes.entries()) {
    const result = await sql(node, 'SELECT id::int AS id, balance::int AS balance FROM accounts');
    for (const row of result.rows as { id: number; balance: number }[]) {
      const list = byId.get(row.id) ?? [];
      list.push({ balance: row.balance, node: index });
      byId.set(row.id, list);
    }
  }
  return byId;
}

describe('reshard table adopt: a plain table becomes sharded, online', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let env: Record<string, string>;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'adopt');
    access = await createEmptyCluster(cluster.servers, 3, SLOTS);
    env = { RESHARD_CATALOG: catalogUrl(access.catalog) };
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('computes on the source the slot PostgreSQL routes each key to (power-of-two and other slot counts, every key type)', async () => {
    const server = cluster.servers[3]!;
    const keys = { bigint: ['0', '1', '-1', '9223372036854775807', '-9223372036854775808', '42', '123456789012'], integer: ['0', '-7', '2147483647', '99'], text: ['', 'a', 'Ada Lovelace', 'é'], uuid: ['00000000-0000-0000-0000-000000000000', '6f1c2b1e-8d4a-4b8e-9c3a-2f6e1d0c9b7a'] } as const;
    for (const modulus of [32, 64, 1000, 7]) {
      for (const [type, values] of Object.entries(keys) as [keyof typeof keys, readonly string[]][]) {
        const result = await sql(server, `SELECT ${slotOfKeySql('k', type, modulus)} AS slot FROM unnest($1::${type}[]) WITH ORDINALITY AS u(k, n) ORDER BY n`, [values]);
        const expected = values.map((value) => slotOf(type, type === 'bigint' ? BigInt(value) : type === 'integer' ? Number(value) : value, modulus));
        expect(result.rows.map((row: { slot: number }) => row.slot), `${type} mod ${modulus}`).toEqual(expected);
      }
    }
  });

  it('adopts a 20k-row table from a separate server under 4 writers (2 routed, 2 direct): every acknowledged write exactly once', async () => {
    const source = cluster.servers[3]!;
    const nodes = cluster.servers.slice(0, 3);
    await sql(source, 'CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)');
    await sql(source, `INSERT INTO accounts SELECT g, 0, 'seed ' || g FROM generate_series(1, ${ROWS}) g`);
    // One counter row per writer.
    const counters = [1, 2, 3, 4];

    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt test', holdTimeoutMs: 30_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'accounts', holdTimeoutMs: 60_000 });
    const directPool = new pg.Pool({ ...source.connection, max: 2 });
    const routedSend = async (key: number, text: string, params: unknown[]): Promise<'ok' | 'fenced'> => {
      await adopting.query(key, text, params);
      return 'ok';
    };
    // Direct writers from the start; routed ones once the adoption is recorded (before, the router knows no such table).
    const writers = [
      startWriter(counters[2]!, 3_000_000, (_key, text, params) => directSend(directPool, text, params)),
      startWriter(counters[3]!, 4_000_000, (_key, text, params) => directSend(directPool, text, params)),
    ];
    let adopted;
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const adopting$ = runCli(['table', 'adopt', 'accounts', '--from', catalogUrl(source.connection), '--key', 'id', '--json'], env, 300_000);
      await waitFor('the adoption recorded', async () => (adopting.state === 'streaming' ? true : undefined), { timeoutMs: 60_000, pollMs: 5, fix: 'the adoption did not start' });
      writers.unshift(startWriter(counters[0]!, 1_000_000, routedSend), startWriter(counters[1]!, 2_000_000, routedSend));
      adopted = await adopting$;
      // Routed writers keep going after the switch.
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      for (const writer of writers) await writer.stop();
      await adopting.close();
      await router.close();
      await directPool.end();
    }
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);
    const result = JSON.parse(adopted.stdout.trim().split('\n').pop()!) as { rows: number; kept_as: string };

    for (const writer of writers) expect(writer.tally.otherErrors.slice(0, 3)).toEqual([]);
    // The direct writers met the fence (RSM01), not a success after the switch.
    expect(writers[2]!.tally.fencedErrors).toBe(1);
    expect(writers[3]!.tally.fencedErrors).toBe(1);
    // The routed writers wrote on through the cutover, and after it.
    expect(writers[0]!.tally.fencedErrors).toBe(0);
    expect(writers[0]!.tally.inserted.length).toBeGreaterThan(0);

    const byId = await shardedRows(nodes);
    const { owners } = await withCatalog(access, async (catalog) => readSlotMap(catalog));
    const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
    expect(byId.size).toBe(ROWS + acknowledged.length);
    for (const [id, copies] of byId) {
      expect(copies.length, `id ${id} once`).toBe(1);
      expect(`n${copies[0]!.node + 1}`).toBe(owners[slotOf('bigint', id, SLOTS)]);
    }
    for (const id of acknowledged) expect(byId.has(id), `acknowledged insert ${id}`).toBe(true);
    for (const [index, writer] of writers.entries()) expect(byId.get(counters[index]!)![0]!.balance, `counter ${counters[index]}`).toBe(writer.tally.increments);
    expect(result.rows).toBeGreaterThanOrEqual(ROWS);

    // Routed writes reached the old table before the cutover (the router sent them there), and the nodes after it.
    const routedOnSource = (await sql(source, 'SELECT count(*)::int AS n FROM accounts WHERE id BETWEEN 1000000 AND 2999999')).rows[0].n as number;
    expect(routedOnSource).toBeGreaterThan(0);
    expect(routedOnSource).toBeLessThan(writers[0]!.tally.inserted.length + writers[1]!.tally.inserted.length);
    // The old table is kept under its name on the separate server, fenced.
    const fenced = await sql(source, 'INSERT INTO accounts (id) VALUES (99999999)').catch((error: { code?: string }) => error);
    expect((fenced as { code?: string }).code).toBe('RSM01');
    // No replication slot left on the source.
    expect((await sql(source, 'SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBe(0);
    const verify = await runCli(['verify', '--json'], env);
    expect(verify.code).toBe(0);
  }, 400_000);

  it('converts a table spread hash mod 3 by the application over the cluster\'s own 3 nodes, under writers that follow the fence to the router', async () => {
    const nodes = cluster.servers.slice(0, 3);
    const serverOf = (id: number): LocalServer => nodes[id % 3]!;
    for (const [index, node] of nodes.entries()) {
      await sql(node, 'CREATE TABLE events (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)');
      await sql(node, `INSERT INTO events SELECT g, 0, 'seed' FROM generate_series(1, 9000) g WHERE g % 3 = ${index}`);
    }
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt test mod 3', holdTimeoutMs: 30_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'events' });
    const pools = nodes.map((node) => new pg.Pool({ ...node.connection, max: 2 }));
    // The application's own routing (id mod 3) until the fence says the adoption has the table; then the router.
    const send = async (key: number, text: string, params: unknown[]): Promise<'ok' | 'fenced'> => {
      if (adopting.state !== 'switched') {
        const direct = await directSend(pools[key % 3]!, text.replaceAll('accounts', 'events'), params);
        if (direct === 'ok') return 'ok';
        await waitFor('the switch', async () => (adopting.state === 'switched' ? true : undefined), { timeoutMs: 60_000, pollMs: 5, fix: 'the adoption did not switch' });
      }
      await router.query(key, text.replaceAll('accounts', 'events'), params);
      return 'ok';
    };
    // Counter rows 3, 4, 5: one on each source.
    const counters = [3, 4, 5];
    const writers = counters.map((counter, index) => startWriter(counter, 5_000_000 + index * 100_000, send));
    let adopted;
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      adopted = await runCli(['table', 'adopt', 'events', '--from', nodes.map((node) => catalogUrl(node.connection)).join(','), '--key', 'id', '--json'], env, 300_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      for (const writer of writers) await writer.stop();
      await adopting.close();
      await router.close();
      for (const pool of pools) await pool.end();
    }
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);
    for (const writer of writers) expect(writer.tally.otherErrors.slice(0, 3)).toEqual([]);

    const byId = new Map<number, { balance: number; node: number }[]>();
    for (const [index, node] of nodes.entries()) {
      for (const row of (await sql(node, 'SELECT id::int AS id, balance::int AS balance FROM events')).rows as { id: number; balance: number }[]) {
        byId.set(row.id, [...(byId.get(row.id) ?? []), { balance: row.balance, node: index }]);
      }
    }
    const { owners } = await withCatalog(access, async (catalog) => readSlotMap(catalog));
    const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
    expect(byId.size).toBe(9000 + acknowledged.length);
    for (const [id, copies] of byId) {
      expect(copies.length, `id ${id} once`).toBe(1);
      expect(`n${copies[0]!.node + 1}`).toBe(owners[slotOf('bigint', id, SLOTS)]);
    }
    for (const id of acknowledged) expect(byId.has(id)).toBe(true);
    for (const [index, writer] of writers.entries()) expect(byId.get(counters[index]!)![0]!.balance).toBe(writer.tally.increments);
    // Each node kept its old table, renamed and fenced; serverOf is the app's map, still holding the old rows.
    const migration = (await sql(nodes[0]!, "SELECT max(migration_id)::int AS id FROM reshard.adoption WHERE table_name = 'events'")).rows[0].id as number;
    for (const [index, node] of nodes.entries()) {
      const kept = await sql(node, `SELECT count(*)::int AS n FROM "events__adopted_m${migration}"`);
      expect(kept.rows[0].n).toBeGreaterThan(2900);
      const write = await sql(node, `INSERT INTO "events__adopted_m${migration}" (id) VALUES (${90_000_000 + index})`).catch((error: { code?: string }) => error);
      expect((write as { code?: string }).code).toBe('RSM01');
    }
    expect(serverOf(3)).toBe(nodes[0]);
  }, 400_000);

  it('refuses rows with the same key on two sources before anything is switched, and leaves nothing behind', async () => {
    const [first, second] = cluster.servers.slice(0, 2);
    await sql(first!, 'CREATE TABLE dups (id bigint PRIMARY KEY, note text)');
    await sql(second!, 'CREATE TABLE dups (id bigint PRIMARY KEY, note text)');
    await sql(first!, "INSERT INTO dups SELECT g, 'a' FROM generate_series(1, 100) g");
    await sql(second!, "INSERT INTO dups SELECT g, 'b' FROM generate_series(100, 200) g");
    const adopted = await runCli(['table', 'adopt', 'dups', '--from', `${catalogUrl(first!.connection)},${catalogUrl(second!.connection)}`, '--key', 'id'], env, 120_000);
    expect(adopted.code).not.toBe(0);
    expect(adopted.stderr).toMatch(/reshard: error: key 100 of dups is on node n2 and on another source/);
    for (const node of cluster.servers.slice(0, 3)) {
      expect((await sql(node, "SELECT to_regclass('dups__adopting') IS NULL AS gone")).rows[0].gone).toBe(true);
      expect((await sql(node, "SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE 'reshard_%adopt%'")).rows[0].n).toBe(0);
    }
    expect((await sql(first!, "SELECT count(*)::int AS n FROM reshard.sharded_table WHERE table_name = 'dups'")).rows[0].n).toBe(0);
    // The old tables are untouched and writable.
    await sql(first!, "INSERT INTO dups VALUES (1000, 'still mine')");
    // --dry-run lists the steps as the journal names them, and changes nothing.
    const migrations = (await sql(first!, 'SELECT count(*)::int AS n FROM reshard.migration')).rows[0].n as number;
    const dryRun = await runCli(['table', 'adopt', 'dups', '--from', catalogUrl(first!.connection), '--key', 'id', '--dry-run', '--json'], env);
    expect(dryRun.code).toBe(0);
    const steps = (JSON.parse(dryRun.stdout.trim()) as { steps: { step: string }[] }).steps.map((entry) => entry.step);
    expect(steps).toEqual(['prepare', 'stream', 'freeze', 'sync', 'verify', 'attach', 'switch', 'cleanup']);
    expect((await sql(first!, 'SELECT count(*)::int AS n FROM reshard.migration')).rows[0].n).toBe(migrations);
    expect((await sql(second!, 'SELECT count(*)::int AS n FROM dups')).rows[0].n).toBe(101);
  }, 200_000);

  it('rolls an adoption back after its switch: writes made since go back to the old table, through the router with no error', async () => {
    const source = cluster.servers[3]!;
    await sql(source, 'CREATE TABLE ledger (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)');
    await sql(source, "INSERT INTO ledger SELECT g, 0, 'seed' FROM generate_series(1, 5000) g");
    const adopted = await runCli(['table', 'adopt', 'ledger', '--from', catalogUrl(source.connection), '--key', 'id', '--json'], env, 300_000);
    expect(adopted.stderr).toBe('');
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt rollback test', holdTimeoutMs: 30_000 });
    const adopting = await AdoptingTable.connect(router, { catalog: access.catalog, table: 'ledger', holdTimeoutMs: 60_000 });
    expect(adopting.state).toBe('switched');
    const send = async (key: number, text: string, params: unknown[]): Promise<'ok' | 'fenced'> => {
      await adopting.query(key, text.replaceAll('accounts', 'ledger'), params);
      return 'ok';
    };
    // Written on the nodes after the switch: an update and a delete of old rows.
    await adopting.query(10, 'UPDATE ledger SET note = $2 WHERE id = $1', [10, 'changed after the switch']);
    await adopting.query(11, 'DELETE FROM ledger WHERE id = $1', [11]);
    const writers = [startWriter(20, 7_000_000, send), startWriter(21, 7_100_000, send)];
    let rolledBack;
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      rolledBack = await runCli(['rollback', '--json'], env, 300_000);
      await waitFor('the rollback seen by the router', async () => (adopting.state === 'rolled_back' ? true : undefined), { timeoutMs: 10_000, pollMs: 5, fix: 'no notification' });
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      for (const writer of writers) await writer.stop();
      await adopting.close();
      await router.close();
    }
    expect(rolledBack.stderr).toBe('');
    expect(rolledBack.code).toBe(0);
    expect(JSON.parse(rolledBack.stdout.trim().split('\n').pop()!)).toMatchObject({ outcome: 'returned' });
    for (const writer of writers) expect(writer.tally.otherErrors.slice(0, 3)).toEqual([]);
    const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
    // Some of the writes were made before the rollback, on the nodes.
    expect(acknowledged.length).toBeGreaterThan(10);
    const rows = (await sql(source, 'SELECT id::int AS id, balance::int AS balance, note FROM ledger')).rows as { id: number; balance: number; note: string }[];
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(rows.length).toBe(5000 - 1 + acknowledged.length);
    for (const id of acknowledged) expect(byId.has(id)).toBe(true);
    expect(byId.get(10)!.note).toBe('changed after the switch');
    expect(byId.has(11)).toBe(false);
    expect(byId.get(20)!.balance).toBe(writers[0]!.tally.increments);
    expect(byId.get(21)!.balance).toBe(writers[1]!.tally.increments);
    // The old table serves again, unfenced; the sharded one is gone everywhere.
    await sql(source, 'INSERT INTO ledger (id) VALUES (99999999)');
    for (const node of cluster.servers.slice(0, 3)) {
      expect((await sql(node, "SELECT to_regclass('ledger') IS NULL AND to_regclass('ledger__adopting') IS NULL AS gone")).rows[0].gone).toBe(true);
    }
    expect((await sql(cluster.servers[0]!, "SELECT count(*)::int AS n FROM reshard.sharded_table WHERE table_name = 'ledger'")).rows[0].n).toBe(0);
  }, 400_000);

  // Every step of an adoption, the coordinator killed as it begins (its 'step' line on standard output).
  for (const killAt of ['prepare', 'stream', 'freeze', 'sync', 'verify', 'attach', 'switch', 'cleanup'] as const) {
    it(`resumes an adoption whose coordinator was killed (SIGKILL) at its ${killAt} step: nothing lost, nothing left`, async () => {
      const source = cluster.servers[3]!;
      const table = `resumed_${killAt}`;
      await sql(source, `CREATE TABLE ${table} (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)`);
      await sql(source, `INSERT INTO ${table} SELECT g, 0, 'seed' FROM generate_series(1, ${ROWS}) g`);
      const pool = new pg.Pool({ ...source.connection, max: 2 });
      const writers = [8, 9].map((counter, index) => startWriter(counter, 8_000_000 + index * 100_000,
        (_key, text, params) => directSend(pool, text.replaceAll('accounts', table), params)));
      const child = spawn(process.execPath, [RESHARD_BIN, 'table', 'adopt', table, '--from', catalogUrl(source.connection), '--key', 'id', '--catalog', env.RESHARD_CATALOG!], { stdio: ['ignore', 'pipe', 'ignore'] });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      let output = '';
      const begun = new Promise<void>((resolve) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes(`step ${killAt}\n`)) {
            child.kill('SIGKILL');
            resolve();
          }
        });
        child.once('exit', () => resolve());
      });
      try {
        await withTimeoutPromise(begun, 120_000);
      } finally {
        child.kill('SIGKILL');
      }
      await exited;
      const state = await sql(cluster.servers[0]!, "SELECT m.state FROM reshard.migration m JOIN reshard.adoption a ON a.migration_id = m.id WHERE a.table_name = $1", [table]);
      expect(state.rows[0].state).toBe('running');
      expect(output).toContain(`step ${killAt}`);
      const resumed = await runCli(['resume', '--json'], env, 300_000);
      for (const writer of writers) await writer.stop();
      await pool.end();
      expect(resumed.stderr).toBe('');
      expect(resumed.code).toBe(0);
      for (const writer of writers) expect(writer.tally.otherErrors.slice(0, 3)).toEqual([]);
      for (const writer of writers) expect(writer.tally.fencedErrors).toBe(1);
      const byId = new Map<number, number[]>();
      for (const node of cluster.servers.slice(0, 3)) {
        for (const row of (await sql(node, `SELECT id::int AS id, balance::int AS balance FROM ${table}`)).rows as { id: number; balance: number }[]) {
          byId.set(row.id, [...(byId.get(row.id) ?? []), row.balance]);
        }
      }
      const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
      expect(byId.size).toBe(ROWS + acknowledged.length);
      for (const copies of byId.values()) expect(copies.length).toBe(1);
      for (const id of acknowledged) expect(byId.has(id)).toBe(true);
      expect(byId.get(8)![0]).toBe(writers[0]!.tally.increments);
      expect(byId.get(9)![0]).toBe(writers[1]!.tally.increments);
      expect((await sql(source, 'SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBe(0);
      for (const node of cluster.servers.slice(0, 3)) {
        expect((await sql(node, `SELECT to_regclass('${table}__adopting') IS NULL AS gone`)).rows[0].gone).toBe(true);
        // The verification's row sums ended with cleanup: no trigger, no sums row.
        expect((await sql(node, "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'reshard_row_sums%') + (SELECT count(*) FROM reshard_node.leaf_row_sums) AS n")).rows[0].n).toBe('0');
      }
      expect((await sql(source, "SELECT to_regclass('reshard_adopt.table_row_sums') IS NULL AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'reshard_adopt_row_sums%') AS gone")).rows[0].gone).toBe(true);
    }, 400_000);
  }

  it('forget-source drops the kept old table; rollback is then refused and changes nothing', async () => {
    const source = cluster.servers[3]!;
    expect((await sql(source, "SELECT to_regclass('resumed_cleanup') IS NOT NULL AS kept")).rows[0].kept).toBe(true);
    const forgotten = await runCli(['table', 'forget-source', 'resumed_cleanup', '--json'], env);
    expect(forgotten.stderr).toBe('');
    expect(forgotten.code).toBe(0);
    expect((await sql(source, "SELECT to_regclass('resumed_cleanup') IS NULL AS gone")).rows[0].gone).toBe(true);
    const rollback = await runCli(['rollback'], env);
    expect(rollback.code).not.toBe(0);
    expect(rollback.stderr).toMatch(/reshard: error: the old table of resumed_cleanup was dropped by `table forget-source`/);
    let rows = 0;
    for (const node of cluster.servers.slice(0, 3)) rows += (await sql(node, 'SELECT count(*)::int AS n FROM resumed_cleanup')).rows[0].n as number;
    expect(rows).toBeGreaterThanOrEqual(ROWS);
    const listed = await runCli(['table', 'list', '--json'], env);
    expect(listed.stdout).toMatch(/resumed_cleanup/);
    // The rest of the tool reads a cluster with adoptions in its history.
    for (const args of [['status', '--json'], ['doctor', '--json'], ['verify', '--json']]) {
      const ran = await runCli(args, env);
      expect(ran.stderr, args.join(' ')).toBe('');
      expect(ran.code, args.join(' ')).toBe(0);
    }
  }, 120_000);
});
