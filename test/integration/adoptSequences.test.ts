import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { checkAdoption } from '../../src/admin/adoptPreflight.js';
import { adoptTable } from '../../src/admin/adoptTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rollbackAdoption } from '../../src/admin/rollbackAdoption.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import { sequenceBlockRange, SEQUENCE_BLOCK_VALUES } from '../../src/core/sequenceBlock.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { tableSequenceStates } from '../../src/node/sequenceRange.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';

const SLOTS = 16;
const SEED_ROWS = 3000;
const NODE_NAMES = ['n1', 'n2', 'n3'];


/**
 * A writer on the source's old table that lets the table's own default give
 * the id (`insert` returns it), until the fence refuses it (RSM01).
 */
function startDefaultWriter(pool: pg.Pool, insert: (pool: pg.Pool) => Promise<bigint>): { ids: bigint[]; errors: string[]; fenced: () => boolean; stop: () => Promise<void> } {
  const ids: bigint[] = [];
  const errors: string[] = [];
  let running = true;
  let fenced = false;
  const loop = (async () => {
    while (running) {
      try {
        ids.push(await insert(pool));
      } catch (error) {
        if ((error as { code?: string }).code === 'RSM01') { fenced = true; return; }
        errors.push((error as Error).message);
        if (errors.length > 20) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  return { ids, errors, fenced: () => fenced, stop: async () => { running = false; await loop; } };
}

/**
 * Item 5 for adopted tables: the sharded copy of an adopted table keeps the
 * source's sequence and identity defaults, each node's own sequence confined
 * to the node's block, whatever the source's sequence stood at. Tables are
 * adopted from a separate server under writers that take their ids from the
 * old table's default; then every node inserts without an id (plain INSERT)
 * and draws ids that are routed: every id distinct, each new one inside the
 * block of the node that drew it.
 */
describe('adopting a table whose keys come from a sequence or identity', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let nodes: LocalServer[];
  let source: LocalServer;
  let blocks: Map<string, number>;

  beforeAll(async () => {
    cluster = await startTestServers(4, 'adoptseq');
    nodes = cluster.servers.slice(0, 3);
    source = cluster.servers[3]!;
    access = { catalog: nodes[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (const [index, name] of NODE_NAMES.entries()) await addNode(access, { name, connection: nodes[index]!.connection });
    blocks = await withCatalog(access, async (catalog) => {
      const result = await catalog.query<{ name: string; block: number }>("SELECT name, sequence_block AS block FROM reshard.node WHERE state <> 'removed'");
      return new Map(result.rows.map((row) => [row.name, row.block]));
    });
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  const owners = async (): Promise<readonly (string | undefined)[]> => (await withCatalog(access, (catalog) => readSlotMap(catalog))).owners;
  const inBlockOf = (node: string, id: bigint): boolean => {
    const range = sequenceBlockRange(blocks.get(node)!);
    return id >= range.min && id <= range.max;
  };
  const idsOnNodes = async (table: string): Promise<bigint[]> => {
    const ids: bigint[] = [];
    for (const node of nodes) ids.push(...(await sql(node, `SELECT id::text AS id FROM ${table}`)).rows.map((row: { id: string }) => BigInt(row.id)));
    return ids;
  };

  it('adopts a bigserial key under writers; afterwards plain INSERTs on every node and ids drawn on every node and routed never collide', async () => {
    await sql(source, 'CREATE TABLE tickets (id bigserial PRIMARY KEY, note text NOT NULL)');
    await sql(source, `INSERT INTO tickets (note) SELECT 'seed ' || g FROM generate_series(1, ${SEED_ROWS}) g`);
    const pool = new pg.Pool({ ...source.connection, max: 2 });
    const insert = async (db: pg.Pool): Promise<bigint> => BigInt((await db.query<{ id: string }>("INSERT INTO tickets (note) VALUES ('direct') RETURNING id::text AS id")).rows[0]!.id);
    const writers = [startDefaultWriter(pool, insert), startDefaultWriter(pool, insert)];
    let adopted;
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      adopted = await adoptTable(access, { name: 'tickets', from: [`postgres://${source.connection.user}@${source.connection.host}:${source.connection.port}/${source.connection.database}`], keyColumn: 'id' });
    } finally {
      for (const writer of writers) await writer.stop();
      await pool.end();
    }
    for (const writer of writers) {
      expect(writer.errors.slice(0, 3)).toEqual([]);
      expect(writer.fenced()).toBe(true);
    }
    const beforeIds = [...Array.from({ length: SEED_ROWS }, (_, index) => BigInt(index + 1)), ...writers.flatMap((writer) => writer.ids)];
    expect(adopted.rows).toBe(beforeIds.length);
    // Every pre-adoption key is below 2^48: the source's sequence position cannot meet a node's block.
    expect(beforeIds.every((id) => id < SEQUENCE_BLOCK_VALUES)).toBe(true);

    // Every node's copy of the sequence stands at its block's start, inside its block, fed to the column as its default.
    for (const [index, name] of NODE_NAMES.entries()) {
      const client = new pg.Client({ ...nodes[index]!.connection });
      await client.connect();
      try {
        const states = await tableSequenceStates(client, { schema: 'public', name: 'tickets' });
        const range = sequenceBlockRange(blocks.get(name)!);
        expect(states.map((state) => ({ column: state.column, min: state.min, max: state.max, next: state.next }))).toEqual([{ column: 'id', min: range.min, max: range.max, next: range.min }]);
      } finally {
        await client.end();
      }
    }

    const slotOwners = await owners();
    const drawn: { node: string; id: bigint }[] = [];
    let plainLanded = 0;
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], name: 'adopt sequences test' });
    try {
      for (const [index, name] of NODE_NAMES.entries()) {
        const client = new pg.Client({ ...nodes[index]!.connection });
        await client.connect();
        try {
          for (let row = 0; row < 40; row++) {
            // Drawn on this node, routed by it (README "Keys from sequences").
            const id = BigInt((await client.query<{ id: string }>("SELECT nextval(pg_get_serial_sequence('tickets', 'id'))::text AS id")).rows[0]!.id);
            await router.query(id.toString(), "INSERT INTO tickets (id, note) VALUES ($1, 'routed')", [id.toString()]);
            drawn.push({ node: name, id });
            // A plain INSERT without an id: lands when the drawn key's slot is this node's, else PostgreSQL finds no partition for it.
            const plain = await client.query<{ id: string }>("INSERT INTO tickets (note) VALUES ('plain') RETURNING id::text AS id").catch((error: { code?: string }) => error);
            if ('rows' in plain) {
              const plainId = BigInt(plain.rows[0]!.id);
              expect(slotOwners[slotOf('bigint', plainId, SLOTS)]).toBe(name);
              drawn.push({ node: name, id: plainId });
              plainLanded++;
            } else {
              expect(plain.code).toBe('23514');
            }
          }
        } finally {
          await client.end();
        }
      }
    } finally {
      await router.close();
    }
    expect(plainLanded).toBeGreaterThan(0);
    expect(drawn.filter((entry) => !inBlockOf(entry.node, entry.id))).toEqual([]);
    const ids = await idsOnNodes('tickets');
    expect(ids).toHaveLength(beforeIds.length + drawn.length);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(new Set([...beforeIds, ...drawn.map((entry) => entry.id)]));
  }, 300_000);

  it('adopts an identity column (GENERATED BY DEFAULT AS IDENTITY, not the shard key) under writers; every node then inserts without an id', async () => {
    await sql(source, 'CREATE TABLE ledger (account_id bigint NOT NULL, id bigint GENERATED BY DEFAULT AS IDENTITY, amount int NOT NULL, PRIMARY KEY (account_id, id))');
    await sql(source, `INSERT INTO ledger (account_id, amount) SELECT g % 97, g FROM generate_series(1, ${SEED_ROWS}) g`);
    const pool = new pg.Pool({ ...source.connection, max: 2 });
    let account = 0;
    const insert = async (db: pg.Pool): Promise<bigint> => BigInt((await db.query<{ id: string }>('INSERT INTO ledger (account_id, amount) VALUES ($1, 1) RETURNING id::text AS id', [account++ % 97])).rows[0]!.id);
    const writers = [startDefaultWriter(pool, insert), startDefaultWriter(pool, insert)];
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      await adoptTable(access, { name: 'ledger', from: [`postgres://${source.connection.user}@${source.connection.host}:${source.connection.port}/${source.connection.database}`], keyColumn: 'account_id' });
    } finally {
      for (const writer of writers) await writer.stop();
      await pool.end();
    }
    for (const writer of writers) {
      expect(writer.errors.slice(0, 3)).toEqual([]);
      expect(writer.fenced()).toBe(true);
    }
    const beforeIds = [...Array.from({ length: SEED_ROWS }, (_, index) => BigInt(index + 1)), ...writers.flatMap((writer) => writer.ids)];

    // The identity survived on the nodes: a plain INSERT on each node, for accounts whose slot the node owns, takes an id from the node's block.
    const slotOwners = await owners();
    const drawn: { node: string; id: bigint }[] = [];
    for (const [index, name] of NODE_NAMES.entries()) {
      const client = new pg.Client({ ...nodes[index]!.connection });
      await client.connect();
      try {
        const identity = await client.query<{ identity: string }>("SELECT attidentity::text AS identity FROM pg_attribute WHERE attrelid = 'ledger'::regclass AND attname = 'id'");
        expect(identity.rows[0]!.identity).toBe('d');
        let accountId = 0;
        for (let row = 0; row < 50; row++) {
          while (slotOwners[slotOf('bigint', accountId, SLOTS)] !== name) accountId++;
          const inserted = await client.query<{ id: string }>('INSERT INTO ledger (account_id, amount) VALUES ($1, 2) RETURNING id::text AS id', [accountId]);
          drawn.push({ node: name, id: BigInt(inserted.rows[0]!.id) });
          accountId++;
        }
      } finally {
        await client.end();
      }
    }
    expect(drawn.filter((entry) => !inBlockOf(entry.node, entry.id))).toEqual([]);
    const ids = await idsOnNodes('ledger');
    expect(ids).toHaveLength(beforeIds.length + drawn.length);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(new Set([...beforeIds, ...drawn.map((entry) => entry.id)]));
  }, 300_000);

  it('adopts a GENERATED ALWAYS identity key under writers; a row inserted on a node after the switch goes back to the old table on rollback', async () => {
    await sql(source, 'CREATE TABLE audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL)');
    await sql(source, `INSERT INTO audit (note) SELECT 'seed ' || g FROM generate_series(1, ${SEED_ROWS}) g`);
    const pool = new pg.Pool({ ...source.connection, max: 2 });
    // Updates too: the change stream then re-inserts existing rows by key, with their own ids, into an ALWAYS identity column.
    let updates = 0;
    const insert = async (db: pg.Pool): Promise<bigint> => {
      // The update first: a fenced insert then leaves no acknowledged row untallied.
      await db.query("UPDATE audit SET note = 'updated' WHERE id = $1", [(updates++ % SEED_ROWS) + 1]);
      return BigInt((await db.query<{ id: string }>("INSERT INTO audit (note) VALUES ('direct') RETURNING id::text AS id")).rows[0]!.id);
    };
    const writers = [startDefaultWriter(pool, insert), startDefaultWriter(pool, insert)];
    let adopted;
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      adopted = await adoptTable(access, { name: 'audit', from: [`postgres://${source.connection.user}@${source.connection.host}:${source.connection.port}/${source.connection.database}`], keyColumn: 'id' });
    } finally {
      for (const writer of writers) await writer.stop();
      await pool.end();
    }
    for (const writer of writers) expect(writer.errors.slice(0, 3)).toEqual([]);
    const beforeIds = [...Array.from({ length: SEED_ROWS }, (_, index) => BigInt(index + 1)), ...writers.flatMap((writer) => writer.ids)];
    expect(adopted.rows).toBe(beforeIds.length);
    const updatedOnNodes = (await Promise.all(nodes.map(async (node) => (await sql(node, "SELECT count(*)::int AS n FROM audit WHERE note = 'updated'")).rows[0].n as number))).reduce((a, b) => a + b, 0);
    expect(updatedOnNodes).toBeGreaterThan(0);
    expect(updatedOnNodes).toBe((await sql(source, "SELECT count(*)::int AS n FROM audit WHERE note = 'updated'")).rows[0].n);

    // A plain INSERT without an id on the node that owns the drawn key: retried until one lands (the key decides the node).
    const slotOwners = await owners();
    let landed: { node: string; id: bigint } | undefined;
    for (let attempt = 0; attempt < 100 && !landed; attempt++) {
      const index = attempt % nodes.length;
      const inserted = await sql(nodes[index]!, "INSERT INTO audit (note) VALUES ('after the switch') RETURNING id::text AS id").catch((error: { code?: string }) => error);
      if ('rows' in inserted) landed = { node: NODE_NAMES[index]!, id: BigInt(inserted.rows[0].id as string) };
      else expect(inserted.code).toBe('23514');
    }
    expect(landed).toBeDefined();
    expect(inBlockOf(landed!.node, landed!.id)).toBe(true);
    expect(slotOwners[slotOf('bigint', landed!.id, SLOTS)]).toBe(landed!.node);

    await rollbackAdoption(access, adopted.migrationId);
    // Back on the old table, with its own identity column (ALWAYS): the row written on the node after the switch, with the node's id.
    const back = await sql(source, 'SELECT id::text AS id FROM audit');
    const backIds = new Set(back.rows.map((row: { id: string }) => BigInt(row.id)));
    expect(backIds).toEqual(new Set([...beforeIds, landed!.id]));
    expect((await sql(source, "SELECT attidentity::text AS identity FROM pg_attribute WHERE attrelid = 'audit'::regclass AND attname = 'id'")).rows[0].identity).toBe('a');
    for (const node of nodes) expect((await sql(node, "SELECT to_regclass('audit') AS t")).rows[0].t).toBeNull();
  }, 300_000);

  it('refuses up front a table whose sequence-fed column already holds a key at or above 2^48, whatever its sequence says', async () => {
    await sql(source, 'CREATE TABLE big_keys (id bigserial PRIMARY KEY, note text)');
    await sql(source, "INSERT INTO big_keys (note) VALUES ('low')");
    await sql(source, `INSERT INTO big_keys (id, note) VALUES (${SEQUENCE_BLOCK_VALUES + 5n}, 'high')`);
    const report = await checkAdoption(access, { name: 'big_keys', from: [source.connection], key: ['id'] });
    expect(report.problems.map((problem) => problem.line())).toEqual([
      `column "id" of big_keys holds ${SEQUENCE_BLOCK_VALUES + 5n}, inside the blocks reshard gives the nodes' sequences (from 2^48 = ${SEQUENCE_BLOCK_VALUES} up): a node could draw it again. ` +
      'Fix: keep the column\'s values below 2^48 (renumber those rows), or give it values some other way (a uuid key)',
    ]);
    const refused = await adoptTable(access, { name: 'big_keys', from: [`postgres://${source.connection.user}@${source.connection.host}:${source.connection.port}/${source.connection.database}`], keyColumn: 'id' }).catch((error: unknown) => error);
    expect((refused as Error).message).toContain('2^48');
    for (const node of nodes) expect((await sql(node, "SELECT to_regclass('big_keys__adopting') AS t")).rows[0].t).toBeNull();
    // The sequence's own position past 2^48 is refused too.
    await sql(source, 'DELETE FROM big_keys WHERE id > 1');
    await sql(source, `SELECT setval('big_keys_id_seq', ${SEQUENCE_BLOCK_VALUES + 9n})`);
    const again = await checkAdoption(access, { name: 'big_keys', from: [source.connection], key: ['id'] });
    expect(again.problems.map((problem) => problem.line()).join('\n')).toContain(`sequence public.big_keys_id_seq of big_keys is at ${SEQUENCE_BLOCK_VALUES + 9n}`);
  }, 120_000);
});
