/**
 * reshard's slot of a key must be the partition PostgreSQL itself routes the
 * row to. This file proves it on a real server: random and edge keys of every
 * shard key type go into real `PARTITION BY HASH` tables, and the partition
 * each row landed in (its REMAINDER, read from the partition bound) is
 * compared with `slotOf`. The raw hashes are compared too, because a mismatch
 * there says which half is wrong.
 */
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashShardKeyValue, slotOf, slotOfKey, type ShardKeyType, type ShardKeyValue } from '../../src/core/hash.js';
import { assertSlotMapValid, initialSlotMap, slotIds, slotModulus, slotOfKeyIn, splitSlotMap, type SlotMap } from '../../src/core/slotMap.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SEED_SQL = '8816678312871386365'; // HASH_PARTITION_SEED 0x7A5B22367996DCFD as a signed int8
const RANDOM_KEYS_PER_TYPE = 10_000;
const BATCH_KEYS = 5_000;
const MODULI = [1024, 100] as const; // a power of two, and one that is not
const SAMPLE_SEED = 20_240_611;

// ---------------------------------------------------------------------------
// Keys: edge values first, then random ones. Every key is kept twice: as the
// value handed to reshard (in each accepted JavaScript form) and as the text
// PostgreSQL parses.

interface Key {
  value: ShardKeyValue;
  sql: string;
}

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;

function bigintKeys(): Key[] {
  const edges = [
    0n, 1n, -1n, 2n, -2n, 255n, 256n, -256n,
    2n ** 31n - 1n, -(2n ** 31n), 2n ** 31n, -(2n ** 31n) - 1n,
    2n ** 32n - 1n, 2n ** 32n, 2n ** 32n + 1n, -(2n ** 32n), -(2n ** 32n) - 1n,
    2n ** 53n - 1n, -(2n ** 53n) + 1n, 2n ** 53n, -(2n ** 53n), 10n ** 15n - 1n, 10n ** 15n,
    INT8_MIN, INT8_MIN + 1n, INT8_MAX, INT8_MAX - 1n,
  ];
  const random = fc.sample(
    fc.integer({ min: 1, max: 64 }).chain((bits) => fc.bigInt({ min: -(2n ** BigInt(bits - 1)), max: 2n ** BigInt(bits - 1) - 1n })),
    { numRuns: RANDOM_KEYS_PER_TYPE, seed: SAMPLE_SEED },
  );
  // Hand reshard each value as a bigint, a number (when exact) and a string in turn.
  return [...edges, ...random].map((big, index) => {
    const safe = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER);
    const form = index % 3;
    const value: ShardKeyValue = form === 0 ? big : form === 1 && safe ? Number(big) : big.toString();
    return { value, sql: big.toString() };
  });
}

function integerKeys(): Key[] {
  const edges = [0, 1, -1, 2, -2, 255, 256, 65_535, 65_536, -65_536, 2 ** 31 - 1, -(2 ** 31), 2 ** 31 - 2, -(2 ** 31) + 1];
  const random = fc.sample(
    fc.integer({ min: 1, max: 32 }).chain((bits) => fc.integer({ min: -(2 ** (bits - 1)), max: 2 ** (bits - 1) - 1 })),
    { numRuns: RANDOM_KEYS_PER_TYPE, seed: SAMPLE_SEED },
  );
  return [...edges, ...random].map((n, index) => {
    const form = index % 3;
    const value: ShardKeyValue = form === 0 ? n : form === 1 ? BigInt(n) : String(n);
    return { value, sql: String(n) };
  });
}

const textUnit = fc.oneof(
  { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }), weight: 4 },
  { arbitrary: fc.constantFrom('ä', 'Ö', 'ß', 'é', '€', '中', '文', '字', '😀', '🎉', '👩‍💻', '"', '\\', '{', '}', ',', ' ', "'", '\t', '\n'), weight: 3 },
  { arbitrary: fc.integer({ min: 0x4e00, max: 0x9fff }).map((cp) => String.fromCodePoint(cp)), weight: 1 }, // CJK
  { arbitrary: fc.integer({ min: 0x1f300, max: 0x1faff }).map((cp) => String.fromCodePoint(cp)), weight: 1 }, // emoji
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((s) => s !== '\u0000'), weight: 1 },
);

function textKeys(): Key[] {
  const edges = ['', 'a', 'ä', '€', '中', '😀', 'hello world', 'ä€中😀', '"quoted"', 'back\\slash', '{brace}', 'NULL', ' '];
  // Byte lengths around lookup3's 12-byte blocks, in ASCII and with multi-byte characters straddling a block edge.
  for (let length = 0; length <= 37; length++) {
    edges.push('x'.repeat(length));
    edges.push('x'.repeat(length) + 'ä');
    edges.push('x'.repeat(length) + '€');
    edges.push('x'.repeat(length) + '😀');
  }
  edges.push('long '.repeat(20), 'ä'.repeat(500), '€😀中'.repeat(700), 'z'.repeat(10_000));
  const random = fc.sample(
    fc.oneof(
      { arbitrary: fc.array(textUnit, { maxLength: 40 }).map((units) => units.join('')), weight: 8 },
      { arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }), weight: 1 },
      { arbitrary: fc.array(textUnit, { minLength: 40, maxLength: 300 }).map((units) => units.join('')), weight: 1 },
    ),
    { numRuns: RANDOM_KEYS_PER_TYPE, seed: SAMPLE_SEED },
  );
  return [...edges, ...random].map((text) => ({ value: text, sql: text }));
}

function uuidForms(hex: string): string[] {
  const dashed = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  const everyFour = hex.match(/.{4}/g)!.join('-');
  return [dashed, dashed.toUpperCase(), hex, `{${dashed}}`, everyFour, `{${hex.toUpperCase()}}`];
}

function uuidKeys(): Key[] {
  const edges = [
    ...uuidForms('0'.repeat(32)),
    ...uuidForms('f'.repeat(32)),
    ...uuidForms('00000000000000000000000000000001'),
    ...uuidForms('80000000000000000000000000000000'),
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  ];
  const random = fc.sample(
    fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => Buffer.from(bytes).toString('hex')),
    { numRuns: RANDOM_KEYS_PER_TYPE, seed: SAMPLE_SEED },
  );
  return [...edges, ...random.map((hex, index) => uuidForms(hex)[index % 6]!)].map((text) => ({ value: text, sql: text }));
}

interface TypeCase {
  type: ShardKeyType;
  sqlType: string;
  hashFunction: string;
  keys: Key[];
}

const TYPE_CASES: TypeCase[] = [
  { type: 'bigint', sqlType: 'int8', hashFunction: 'hashint8extended', keys: bigintKeys() },
  { type: 'integer', sqlType: 'int4', hashFunction: 'hashint4extended', keys: integerKeys() },
  { type: 'text', sqlType: 'text', hashFunction: 'hashtextextended', keys: textKeys() },
  { type: 'uuid', sqlType: 'uuid', hashFunction: 'uuid_hash_extended', keys: uuidKeys() },
];

// ---------------------------------------------------------------------------
// SQL helpers.

function batches<T>(items: readonly T[]): T[][] {
  const result: T[][] = [];
  for (let start = 0; start < items.length; start += BATCH_KEYS) result.push(items.slice(start, start + BATCH_KEYS));
  return result;
}

/** A hash-partitioned table `(i int, <columns>)` with `modulus` partitions, created by one DO loop. */
async function createHashTable(db: pg.Client, table: string, columns: { name: string; sqlType: string }[], modulus: number): Promise<void> {
  const columnList = columns.map((column) => `${column.name} ${column.sqlType}`).join(', ');
  const keyList = columns.map((column) => column.name).join(', ');
  await db.query(`CREATE TABLE ${table} (i int NOT NULL, ${columnList}) PARTITION BY HASH (${keyList})`);
  await db.query(`
    DO $$
    BEGIN
      FOR r IN 0..${modulus - 1} LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF ${table} FOR VALUES WITH (MODULUS ${modulus}, REMAINDER %s)', '${table}_' || r, r);
      END LOOP;
    END $$`);
}

/** Each row's REMAINDER, read from the bound of the partition it is stored in, by row number i. */
async function remaindersByRow(db: pg.Client, table: string, rowCount: number): Promise<Int32Array> {
  const result = await db.query<{ i: number; remainder: number }>(`
    SELECT t.i, (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'remainder (\\d+)', 'i'))[1]::int AS remainder
    FROM ${table} t JOIN pg_class c ON c.oid = t.tableoid`);
  expect(result.rows.length).toBe(rowCount);
  const remainders = new Int32Array(rowCount).fill(-1);
  for (const row of result.rows) remainders[row.i] = row.remainder;
  return remainders;
}

interface Mismatch {
  key: string;
  ours: string;
  postgres: string;
}

function report(what: string, checked: number, mismatches: Mismatch[]): void {
  console.log(`${what}: ${checked} keys, ${mismatches.length} mismatches`);
  expect(mismatches.slice(0, 5)).toEqual([]);
}

// ---------------------------------------------------------------------------

describe('slotOf matches PostgreSQL hash partition routing', () => {
  let cluster: TestServers;
  let db: pg.Client;

  beforeAll(async () => {
    cluster = await startTestServers(1, 'hash');
    db = await connectTo(cluster.servers[0]!.connection);
    const encoding = await db.query<{ server_encoding: string }>('SHOW server_encoding');
    expect(encoding.rows[0]?.server_encoding).toBe('UTF8');
    const version = await db.query<{ server_version: string }>('SHOW server_version');
    console.log(`PostgreSQL ${version.rows[0]?.server_version}`);
  });
  afterAll(async () => {
    await db?.end();
    await cluster?.stop();
  });

  for (const typeCase of TYPE_CASES) {
    describe(typeCase.type, () => {
      it(`raw ${typeCase.hashFunction} values are equal`, async () => {
        const mismatches: Mismatch[] = [];
        for (const batch of batches(typeCase.keys)) {
          const result = await db.query<{ hash: string }>(
            `SELECT ${typeCase.hashFunction}(k, $2::int8)::text AS hash
             FROM unnest($1::${typeCase.sqlType}[]) WITH ORDINALITY AS u(k, n) ORDER BY n`,
            [batch.map((key) => key.sql), SEED_SQL],
          );
          result.rows.forEach((row, index) => {
            const key = batch[index]!;
            const postgres = BigInt.asUintN(64, BigInt(row.hash));
            const ours = hashShardKeyValue(typeCase.type, key.value);
            if (ours !== postgres) mismatches.push({ key: key.sql.slice(0, 80), ours: ours.toString(16), postgres: postgres.toString(16) });
          });
        }
        report(`raw ${typeCase.hashFunction}`, typeCase.keys.length, mismatches);
      });

      for (const modulus of MODULI) {
        it(`rows land in partition REMAINDER slotOf(key, ${modulus})`, async () => {
          const table = `route_${typeCase.type}_${modulus}`;
          await createHashTable(db, table, [{ name: 'k', sqlType: typeCase.sqlType }], modulus);
          for (const [batchIndex, batch] of batches(typeCase.keys).entries()) {
            await db.query(
              `INSERT INTO ${table} (i, k) SELECT n - 1 + $2, k FROM unnest($1::${typeCase.sqlType}[]) WITH ORDINALITY AS u(k, n)`,
              [batch.map((key) => key.sql), batchIndex * BATCH_KEYS],
            );
          }
          const remainders = await remaindersByRow(db, table, typeCase.keys.length);
          // A routing bug that sent every row to one partition must not pass unnoticed.
          expect(new Set(remainders).size).toBeGreaterThan(modulus / 2);
          const mismatches: Mismatch[] = [];
          typeCase.keys.forEach((key, index) => {
            const ours = slotOf(typeCase.type, key.value, modulus);
            if (ours !== remainders[index]) mismatches.push({ key: key.sql.slice(0, 80), ours: String(ours), postgres: String(remainders[index]) });
          });
          report(`${typeCase.type} routing, M=${modulus}`, typeCase.keys.length, mismatches);
          await db.query(`DROP TABLE ${table}`);
        });
      }
    });
  }

  // Split slots: one table whose partitions mix moduli 8, 16 and 32 (a slot map
  // after splits), and every key's partition compared with slotOfKeyIn.
  const mixedMap = ((): SlotMap => {
    let map: SlotMap = initialSlotMap(['a'], 8);
    map = splitSlotMap(map, 0); // 0 and 8 of 16
    map = splitSlotMap(map, 8); // 8 and 24 of 32
    map = splitSlotMap(map, 3); // 3 and 11 of 16
    map = splitSlotMap(map, 3); // 3 and 19 of 32
    map = splitSlotMap(map, 6); // 6 and 14 of 16
    assertSlotMapValid(map);
    return map;
  })();

  for (const typeCase of TYPE_CASES) {
    it(`${typeCase.type} rows land in the slot slotOfKeyIn gives under mixed moduli 8, 16 and 32`, async () => {
      const table = `route_mixed_${typeCase.type}`;
      await db.query(`CREATE TABLE ${table} (i int NOT NULL, k ${typeCase.sqlType}) PARTITION BY HASH (k)`);
      for (const id of slotIds(mixedMap)) {
        await db.query(`CREATE TABLE ${table}_${id} PARTITION OF ${table} FOR VALUES WITH (MODULUS ${slotModulus(mixedMap, id)}, REMAINDER ${id})`);
      }
      for (const [batchIndex, batch] of batches(typeCase.keys).entries()) {
        await db.query(
          `INSERT INTO ${table} (i, k) SELECT n - 1 + $2, k FROM unnest($1::${typeCase.sqlType}[]) WITH ORDINALITY AS u(k, n)`,
          [batch.map((key) => key.sql), batchIndex * BATCH_KEYS],
        );
      }
      const remainders = await remaindersByRow(db, table, typeCase.keys.length);
      // Every partition, of each modulus, must receive rows: a bug that skipped a modulus would not pass.
      expect(new Set(remainders)).toEqual(new Set(slotIds(mixedMap)));
      const mismatches: Mismatch[] = [];
      typeCase.keys.forEach((key, index) => {
        const ours = slotOfKeyIn(mixedMap, [typeCase.type], [key.value]);
        if (ours !== remainders[index]) mismatches.push({ key: key.sql.slice(0, 80), ours: String(ours), postgres: String(remainders[index]) });
      });
      report(`${typeCase.type} routing, mixed moduli 8/16/32`, typeCase.keys.length, mismatches);
      await db.query(`DROP TABLE ${table}`);
    });
  }

  it('slotOf agrees with satisfies_hash_partition for odd, huge and tiny moduli', async () => {
    const moduli = [1, 2, 3, 7, 64, 1000, 65_536, 2 ** 21 + 1, 1_000_000_007, 2 ** 31 - 1];
    const keysPerType = 2_000;
    for (const typeCase of TYPE_CASES) {
      const table = `check_${typeCase.type}`;
      await db.query(`CREATE TABLE ${table} (k ${typeCase.sqlType}) PARTITION BY HASH (k)`);
      const keys = typeCase.keys.slice(0, keysPerType);
      for (const modulus of moduli) {
        const result = await db.query<{ wrong: string }>(
          `SELECT count(*) FILTER (WHERE NOT satisfies_hash_partition('${table}'::regclass, ${modulus}, s, k))::text AS wrong
           FROM unnest($1::${typeCase.sqlType}[], $2::int4[]) AS x(k, s)`,
          [keys.map((key) => key.sql), keys.map((key) => slotOf(typeCase.type, key.value, modulus))],
        );
        if (result.rows[0]?.wrong !== '0') console.log(`${typeCase.type}, M=${modulus}: ${result.rows[0]?.wrong} mismatches`);
        expect(result.rows[0]?.wrong).toBe('0');
      }
      await db.query(`DROP TABLE ${table}`);
    }
    console.log(`satisfies_hash_partition: ${TYPE_CASES.length} types x ${keysPerType} keys x M in [${moduli.join(', ')}], 0 mismatches`);
  });

  it('int4 and int8 hash alike on the int4 range (hashint4extended = hashint8extended)', async () => {
    const keys = TYPE_CASES[1]!.keys.map((key) => key.sql);
    const result = await db.query<{ differing: string }>(
      `SELECT count(*) FILTER (WHERE hashint4extended(k, $2::int8) <> hashint8extended(k::int8, $2::int8))::text AS differing
       FROM unnest($1::int4[]) AS k`,
      [keys, SEED_SQL],
    );
    expect(result.rows[0]?.differing).toBe('0');
  });

  for (const modulus of MODULI) {
    it(`composite key (bigint, text) lands in REMAINDER slotOfKey(key, ${modulus})`, async () => {
      const bigints = TYPE_CASES[0]!.keys;
      const texts = TYPE_CASES[2]!.keys;
      const rowCount = Math.min(bigints.length, texts.length);
      // Pair each bigint with a text some way along, so edge values meet random ones.
      const pairs = Array.from({ length: rowCount }, (_, index) => [bigints[index]!, texts[(index * 7919) % rowCount]!] as const);
      const table = `route_composite_${modulus}`;
      await createHashTable(db, table, [{ name: 'a', sqlType: 'int8' }, { name: 'b', sqlType: 'text' }], modulus);
      for (const [batchIndex, batch] of batches(pairs).entries()) {
        await db.query(
          `INSERT INTO ${table} (i, a, b) SELECT n - 1 + $3, a, b FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS u(a, b, n)`,
          [batch.map(([a]) => a.sql), batch.map(([, b]) => b.sql), batchIndex * BATCH_KEYS],
        );
      }
      const remainders = await remaindersByRow(db, table, rowCount);
      const mismatches: Mismatch[] = [];
      pairs.forEach(([a, b], index) => {
        const ours = slotOfKey(['bigint', 'text'], [a.value, b.value], modulus);
        if (ours !== remainders[index]) mismatches.push({ key: `(${a.sql}, ${b.sql.slice(0, 60)})`, ours: String(ours), postgres: String(remainders[index]) });
      });
      report(`composite (bigint, text) routing, M=${modulus}`, rowCount, mismatches);
      await db.query(`DROP TABLE ${table}`);
    });
  }

  it('composite key (uuid, integer, text) agrees with satisfies_hash_partition', async () => {
    const modulus = 1000;
    const uuids = TYPE_CASES[3]!.keys;
    const integers = TYPE_CASES[1]!.keys;
    const texts = TYPE_CASES[2]!.keys;
    const rowCount = 3_000;
    const triples = Array.from({ length: rowCount }, (_, index) => [uuids[index]!, integers[(index * 31) % integers.length]!, texts[(index * 101) % texts.length]!] as const);
    await db.query('CREATE TABLE route_triple (u uuid, n int4, t text) PARTITION BY HASH (u, n, t)');
    const result = await db.query<{ wrong: string }>(
      `SELECT count(*) FILTER (WHERE NOT satisfies_hash_partition('route_triple'::regclass, ${modulus}, s, u, n, t))::text AS wrong
       FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::int4[]) AS x(u, n, t, s)`,
      [
        triples.map(([u]) => u.sql),
        triples.map(([, n]) => n.sql),
        triples.map(([, , t]) => t.sql),
        triples.map(([u, n, t]) => slotOfKey(['uuid', 'integer', 'text'], [u.value, n.value, t.value], modulus)),
      ],
    );
    console.log(`composite (uuid, integer, text) satisfies_hash_partition, M=${modulus}: ${rowCount} keys, ${result.rows[0]?.wrong} mismatches`);
    expect(result.rows[0]?.wrong).toBe('0');
    await db.query('DROP TABLE route_triple');
  });
});
