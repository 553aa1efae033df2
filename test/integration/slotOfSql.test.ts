/**
 * `reshard.slot_of(table, key…)` in the catalog (schema version 5) and
 * `reshard slot-of` must name the slot PostgreSQL itself routes the row to,
 * and that slot's owner. Proof on a real cluster: for every supported key type
 * (and a two-column key), random and edge keys are located by `slot_of`, each
 * row is inserted into the sharded table on the node `slot_of` names (a wrong
 * owner has no partition for it, and the INSERT fails), and the REMAINDER of
 * the partition PostgreSQL put it in is compared with `slot_of`'s slot and
 * with src/core/hash.ts. M = 100, not a power of two, so every bit of the
 * 64-bit row hash counts; `hash_partition_slot` is also checked against the
 * TypeScript hash for a huge odd modulus.
 */
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { slotOfKey, type ShardKeyType } from '../../src/core/hash.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { accessFor } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 100;
const RANDOM_KEYS = 1_200;
const SAMPLE_SEED = 20_261_130;
const NODE_NAMES = ['n1', 'n2'] as const;

interface KeyCase {
  table: string;
  /** Column definitions of the sharded table; `i` numbers the rows. */
  definition: string;
  shardKey: string[];
  types: ShardKeyType[];
  sqlTypes: string[];
  /** One key = one text value per key column. */
  keys: string[][];
}

function distinct(keys: string[][]): string[][] {
  const seen = new Set<string>();
  return keys.filter((key) => {
    const id = JSON.stringify(key);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

const bigints = (): string[] => [
  ...['0', '1', '-1', '2147483647', '-2147483648', '4294967296', '-4294967297', '9007199254740993', '9223372036854775807', '-9223372036854775808'],
  ...fc.sample(
    fc.integer({ min: 1, max: 64 }).chain((bits) => fc.bigInt({ min: -(2n ** BigInt(bits - 1)), max: 2n ** BigInt(bits - 1) - 1n })),
    { numRuns: 2 * RANDOM_KEYS, seed: SAMPLE_SEED }, // small widths repeat: twice as many, to keep 1,000+ distinct
  ).map(String),
];

const integers = (): string[] => [
  ...['0', '1', '-1', '65536', '2147483647', '-2147483648'],
  ...fc.sample(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { numRuns: RANDOM_KEYS, seed: SAMPLE_SEED }).map(String),
];

const texts = (): string[] => [
  ...['', 'a', 'ä', '€', '中', '😀', 'hello world', "it's", 'back\\slash', 'x'.repeat(11), 'x'.repeat(12), 'x'.repeat(13), 'ä€中😀'.repeat(5)],
  ...fc.sample(fc.string({ unit: 'grapheme', maxLength: 40 }), { numRuns: RANDOM_KEYS, seed: SAMPLE_SEED }).filter((text) => !text.includes('\u0000')),
];

const uuids = (): string[] => [
  '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  ...fc.sample(fc.uuid(), { numRuns: RANDOM_KEYS, seed: SAMPLE_SEED }),
];

const CASES: KeyCase[] = [
  { table: 'key_bigint', definition: 'k bigint NOT NULL, i int NOT NULL, PRIMARY KEY (k)', shardKey: ['k'], types: ['bigint'], sqlTypes: ['bigint'], keys: distinct(bigints().map((k) => [k])) },
  { table: 'key_integer', definition: 'k integer NOT NULL, i int NOT NULL, PRIMARY KEY (k)', shardKey: ['k'], types: ['integer'], sqlTypes: ['integer'], keys: distinct(integers().map((k) => [k])) },
  { table: 'key_text', definition: 'k text NOT NULL, i int NOT NULL, PRIMARY KEY (k)', shardKey: ['k'], types: ['text'], sqlTypes: ['text'], keys: distinct(texts().map((k) => [k])) },
  { table: 'key_uuid', definition: 'k uuid NOT NULL, i int NOT NULL, PRIMARY KEY (k)', shardKey: ['k'], types: ['uuid'], sqlTypes: ['uuid'], keys: distinct(uuids().map((k) => [k])) },
  {
    table: 'key_pair',
    definition: 'a bigint NOT NULL, b text NOT NULL, i int NOT NULL, PRIMARY KEY (a, b)',
    shardKey: ['a', 'b'],
    types: ['bigint', 'text'],
    sqlTypes: ['bigint', 'text'],
    keys: ((textValues) => distinct(bigints().map((a, index) => [a, textValues[index % 500]!])))(texts()),
  },
];

describe('reshard.slot_of names the slot PostgreSQL routes a row to, and its owner', () => {
  let cluster: TestServers;
  let catalog: pg.Client;
  const nodes = new Map<string, pg.Client>();

  beforeAll(async () => {
    cluster = await startTestServers(2, 'slotof');
    const access = accessFor(cluster.servers);
    await initCluster(access, SLOTS);
    for (const [index, name] of NODE_NAMES.entries()) await addNode(access, { name, connection: cluster.servers[index]!.connection });
    for (const keyCase of CASES) await createShardedTable(access, { name: keyCase.table, shardKey: keyCase.shardKey, definition: keyCase.definition });
    catalog = await connectTo(cluster.servers[0]!.connection);
    for (const [index, name] of NODE_NAMES.entries()) nodes.set(name, await connectTo(cluster.servers[index]!.connection));
    const owners = await catalog.query<{ owner: string; slots: number }>('SELECT owner, count(*)::int AS slots FROM reshard.slot GROUP BY owner ORDER BY owner');
    expect(owners.rows.map((row) => row.owner)).toEqual([...NODE_NAMES]); // both nodes own slots: a wrong owner is caught
  }, 240_000);

  afterAll(async () => {
    for (const node of nodes.values()) await node.end();
    await catalog?.end();
    await cluster?.stop();
  });

  for (const keyCase of CASES) {
    it(`${keyCase.table} (${keyCase.types.join(', ')}): ${keyCase.keys.length} keys`, async () => {
      const keyCount = keyCase.keys.length;
      expect(keyCount).toBeGreaterThanOrEqual(1_000);
      const columns = keyCase.shardKey.map((_, column) => keyCase.keys.map((key) => key[column]!));
      // slot_of takes the values in key order; a mixed key passes them as text.
      const mixed = new Set(keyCase.sqlTypes).size > 1;
      const unnestArgs = keyCase.sqlTypes.map((sqlType, column) => `$${column + 1}::${sqlType}[]`).join(', ');
      const valueNames = keyCase.shardKey.map((_, column) => `v${column}`);
      const slotOfArgs = valueNames.map((name) => (mixed ? `${name}::text` : name)).join(', ');
      const located = await catalog.query<{ i: string; slot: number; owner: string; connection: string }>(
        `SELECT v.i, s.slot, s.owner, s.connection
           FROM unnest(${unnestArgs}) WITH ORDINALITY AS v(${valueNames.join(', ')}, i),
                reshard.slot_of('${keyCase.table}', ${slotOfArgs}) AS s`,
        columns,
      );
      expect(located.rows.length).toBe(keyCount);
      const slotOfSql = new Int32Array(keyCount).fill(-1);
      const ownerOfSql: string[] = [];
      for (const row of located.rows) {
        slotOfSql[Number(row.i) - 1] = row.slot;
        ownerOfSql[Number(row.i) - 1] = row.owner;
      }

      // Each row goes to the node slot_of names; PostgreSQL picks the partition there.
      for (const [name, client] of nodes) {
        const mine = keyCase.keys.map((_, index) => index).filter((index) => ownerOfSql[index] === name);
        const insertColumns = [...keyCase.shardKey, 'i'].join(', ');
        const insertArgs = [...keyCase.sqlTypes, 'int'].map((sqlType, column) => `$${column + 1}::${sqlType}[]`).join(', ');
        await client.query(
          `INSERT INTO ${keyCase.table} (${insertColumns}) SELECT * FROM unnest(${insertArgs})`,
          [...columns.map((values) => mine.map((index) => values[index])), mine],
        );
      }
      const routedSlot = new Int32Array(keyCount).fill(-1);
      for (const client of nodes.values()) {
        const rows = await client.query<{ i: number; remainder: number }>(
          `SELECT t.i, (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'remainder (\\d+)', 'i'))[1]::int AS remainder
             FROM ${keyCase.table} t JOIN pg_class c ON c.oid = t.tableoid`,
        );
        for (const row of rows.rows) routedSlot[row.i] = row.remainder;
      }

      const mismatches: string[] = [];
      for (let index = 0; index < keyCount; index++) {
        const ours = slotOfKey(keyCase.types, keyCase.keys[index]!, SLOTS);
        if (slotOfSql[index] !== routedSlot[index] || ours !== routedSlot[index]) {
          mismatches.push(`${JSON.stringify(keyCase.keys[index])}: slot_of ${slotOfSql[index]}, TypeScript ${ours}, PostgreSQL ${routedSlot[index]}`);
        }
      }
      console.log(`${keyCase.table}: ${keyCount} keys, ${mismatches.length} mismatches`);
      expect(mismatches.slice(0, 5)).toEqual([]);
      // Both owners were exercised, and the owner is the slot map's.
      expect(new Set(ownerOfSql)).toEqual(new Set(NODE_NAMES));
      const map = await catalog.query<{ slot: number; owner: string }>('SELECT slot, owner FROM reshard.slot');
      const ownerBySlot = new Map(map.rows.map((row) => [row.slot, row.owner]));
      expect(ownerOfSql.filter((owner, index) => ownerBySlot.get(slotOfSql[index]!) !== owner)).toEqual([]);
    }, 120_000);
  }

  it('hash_partition_slot equals the TypeScript hash for a huge odd modulus', async () => {
    const modulus = 2_147_483_647;
    const keyCase = CASES.find((candidate) => candidate.table === 'key_pair')!;
    const result = await catalog.query<{ slot: number }>(
      `SELECT reshard.hash_partition_slot(ARRAY['bigint', 'text'], ARRAY[a, b], $3) AS slot
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS v(a, b, i) ORDER BY i`,
      [keyCase.keys.map((key) => key[0]), keyCase.keys.map((key) => key[1]), modulus],
    );
    const wrong = result.rows.filter((row, index) => row.slot !== slotOfKey(keyCase.types, keyCase.keys[index]!, modulus));
    expect(result.rows.length).toBe(keyCase.keys.length);
    expect(wrong.length).toBe(0);
  });

  it('names the owner\'s connection, and says what is wrong with a bad call', async () => {
    const { host, port, user, database } = cluster.servers[1]!.connection;
    const row = await catalog.query<{ slot: number; owner: string; connection: string; state: string }>(
      "SELECT * FROM reshard.slot_of('public.key_bigint', 42::bigint)",
    );
    expect(row.rows[0]!.slot).toBe(slotOfKey(['bigint'], [42], SLOTS));
    expect(row.rows[0]!.state).toBe('active');
    const n2 = await catalog.query<{ slot: number; connection: string }>(
      "SELECT s.* FROM generate_series(1, 50) g, reshard.slot_of('key_bigint', g::bigint) s WHERE s.owner = 'n2' LIMIT 1",
    );
    expect(n2.rows[0]!.connection).toBe(`${user}@${host}:${port}/${database}`);
    await expect(catalog.query("SELECT * FROM reshard.slot_of('nope', 1)")).rejects.toThrow(/no sharded table named "nope"/);
    await expect(catalog.query("SELECT * FROM reshard.slot_of('key_pair', 1::bigint)")).rejects.toThrow(/2 column\(s\) but 1 value\(s\)/);
    await expect(catalog.query("SELECT * FROM reshard.slot_of('key_bigint', 'x')")).rejects.toThrow(/invalid input syntax for type bigint/);
    // An untyped literal is text, cast to the key's type: the same slot as the typed call.
    const untyped = await catalog.query<{ slot: number }>("SELECT slot FROM reshard.slot_of('key_bigint', '42')");
    expect(untyped.rows[0]!.slot).toBe(row.rows[0]!.slot);
  });

  it('`reshard slot-of` prints the same slot and owner as the SQL function', async () => {
    const env = { RESHARD_CATALOG: catalogUrl(cluster.servers[0]!.connection) };
    const checks: { table: string; key: string[]; sql: string }[] = [
      { table: 'key_bigint', key: ['42'], sql: "reshard.slot_of('key_bigint', 42::bigint)" },
      { table: 'key_text', key: ['ä€中😀'], sql: "reshard.slot_of('key_text', 'ä€中😀'::text)" },
      { table: 'key_pair', key: ['7', 'seven'], sql: "reshard.slot_of('key_pair', '7', 'seven')" },
    ];
    for (const check of checks) {
      const sql = (await catalog.query<{ slot: number; owner: string; connection: string }>(`SELECT * FROM ${check.sql}`)).rows[0]!;
      const json = await runCli(['--json', 'slot-of', check.table, ...check.key], env);
      expect(json.stderr).toBe('');
      expect(json.code).toBe(0);
      const printed = JSON.parse(json.stdout.trim().split('\n').at(-1)!) as { slot: number; owner: string; connection: string };
      expect({ slot: printed.slot, owner: printed.owner, connection: printed.connection }).toEqual({ slot: sql.slot, owner: sql.owner, connection: sql.connection });
      const text = await runCli(['slot-of', check.table, ...check.key], env);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`slot ${sql.slot}, owner ${sql.owner} (${sql.connection})`);
    }
    const negative = await runCli(['slot-of', 'key_bigint', '--', '-5'], env);
    expect(negative.stdout).toContain(`slot ${slotOfKey(['bigint'], [-5], SLOTS)}, owner`);
    const wrongCount = await runCli(['slot-of', 'key_pair', '7'], env);
    expect(wrongCount.code).toBe(2);
    expect(wrongCount.stderr).toMatch(/key_pair is sharded by \(a, b\) but 1 key value\(s\) were given\. Fix: pass 2 value\(s\)/);
  }, 120_000);
});
