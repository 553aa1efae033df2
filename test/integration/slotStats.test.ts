import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leafStats, rowHashesOf, slotStatsOnBoth } from '../../src/node/slotStats.js';
import { leafName } from '../../src/node/leafName.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import type pg from 'pg';

/**
 * The verification's checksums: hashed by record where every column's type
 * hashes by value alone, by text form otherwise, the same way on both sides,
 * and equal exactly when the two leaves hold the same rows.
 */
describe('slot checksums on real PostgreSQL', () => {
  const MODULUS = 8;
  const SLOT = 3;
  const plain = { schema: 'public', name: 'plain', shardKey: ['id'] };
  // point and json have no extended hash function: hash_record_extended refuses them.
  const exotic = { schema: 'public', name: 'exotic', shardKey: ['id'] };
  // An enum column: hash_record_extended would hash its values by their OIDs.
  const moody = { schema: 'public', name: 'moody', shardKey: ['id'] };
  let servers: TestServers | undefined;
  let left: pg.Client;
  let right: pg.Client;

  /** The three tables as parents (the column types are read from them) and their leaves of SLOT. */
  async function createTables(client: pg.Client): Promise<void> {
    await client.query(`CREATE TABLE plain (id bigint PRIMARY KEY, note text, at timestamptz, amount numeric(12, 2)) PARTITION BY HASH (id)`);
    await client.query(`CREATE TABLE exotic (id bigint PRIMARY KEY, spot point, doc json) PARTITION BY HASH (id)`);
    await client.query(`CREATE TABLE moody (id bigint PRIMARY KEY, feeling mood) PARTITION BY HASH (id)`);
    for (const name of ['plain', 'exotic', 'moody']) {
      await client.query(`CREATE TABLE ${leafName(name, SLOT, MODULUS)} PARTITION OF ${name} FOR VALUES WITH (MODULUS ${MODULUS}, REMAINDER ${SLOT})`);
    }
  }

  async function fill(client: pg.Client, order: 'asc' | 'desc'): Promise<void> {
    // Directly into the leaves (FOR VALUES WITH checks each key belongs to SLOT, so keys are picked by satisfies_hash_partition).
    const keys = (count: number, table: string): string => `(SELECT k FROM generate_series(1, 100000) k WHERE satisfies_hash_partition('${table}'::regclass, ${MODULUS}, ${SLOT}, k::bigint) ORDER BY k LIMIT ${count}) g(g)`;
    await client.query(`INSERT INTO ${leafName('plain', SLOT, MODULUS)} SELECT g, 'note ' || g, '2026-01-01'::timestamptz + g * interval '1 min', g / 7.0 FROM ${keys(500, 'plain')} ORDER BY g ${order}`);
    await client.query(`INSERT INTO ${leafName('exotic', SLOT, MODULUS)} SELECT g, point(g, -g), json_build_object('g', g) FROM ${keys(200, 'exotic')} ORDER BY g ${order}`);
    await client.query(`INSERT INTO ${leafName('moody', SLOT, MODULUS)} SELECT g, (ARRAY['happy', 'ok', 'sad']::mood[])[1 + g % 3] FROM ${keys(200, 'moody')} ORDER BY g ${order}`);
  }

  beforeAll(async () => {
    servers = await startTestServers(1, 'sum');
    const admin = await connectTo(servers.servers[0]!.connection);
    try {
      await admin.query('CREATE DATABASE sum_right');
    } finally {
      await admin.end();
    }
    left = await connectTo(servers.servers[0]!.connection);
    right = await connectTo({ ...servers.servers[0]!.connection, database: 'sum_right' });
    // The enum gets different OIDs in the two databases: another type is made first on the right.
    await left.query(`CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad')`);
    await right.query(`CREATE TYPE weather AS ENUM ('sun', 'rain')`);
    await right.query(`CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad')`);
    await createTables(left);
    await createTables(right);
  }, 120_000);

  afterAll(async () => {
    await left?.end();
    await right?.end();
    await servers?.stop();
  });

  it('hashes by record only where every column allows it: plain columns yes; point, json, an enum no', async () => {
    expect(await rowHashesOf(left, [plain, exotic, moody])).toEqual(['record', 'text', 'text']);
  });

  it('both sides empty: equal', async () => {
    const both = await slotStatsOnBoth(left, right, [plain, exotic, moody], SLOT, MODULUS);
    expect(both.onSource).toEqual([{ rows: 0, checksum: '0' }, { rows: 0, checksum: '0' }, { rows: 0, checksum: '0' }]);
    expect(both.onTarget).toEqual(both.onSource);
  });

  it('one side filled, the other empty: told apart', async () => {
    await fill(left, 'asc');
    const both = await slotStatsOnBoth(left, right, [plain, exotic, moody], SLOT, MODULUS);
    expect(both.onSource.map((stats) => stats.rows)).toEqual([500, 200, 200]);
    expect(both.onTarget).toEqual([{ rows: 0, checksum: '0' }, { rows: 0, checksum: '0' }, { rows: 0, checksum: '0' }]);
  });

  it('the same rows inserted in another order: equal checksums, both ways of hashing — also for an enum whose OIDs differ', async () => {
    await fill(right, 'desc');
    const both = await slotStatsOnBoth(left, right, [plain, exotic, moody], SLOT, MODULUS);
    expect(both.rowHashes).toEqual(['record', 'text', 'text']);
    expect(both.onTarget).toEqual(both.onSource);
    expect((await leafStats(left, plain, SLOT, MODULUS))).toEqual({ ...both.onSource[0], rowHash: 'record' });
    expect((await leafStats(right, moody, SLOT, MODULUS))).toEqual({ ...both.onSource[2], rowHash: 'text' });
    // The trap the type check avoids: PostgreSQL hashes an enum by its OID, which each database numbers on its own.
    const moodLeaf = leafName('moody', SLOT, MODULUS);
    const byRecord = async (client: pg.Client): Promise<string> => (await client.query<{ sum: string }>(`SELECT sum(hash_record_extended(t, 0))::text AS sum FROM ${moodLeaf} t`)).rows[0]!.sum;
    expect(await byRecord(left)).not.toBe(await byRecord(right));
  });

  it('one changed value, with the row count unchanged, changes the checksum', async () => {
    for (const [table, change] of [[plain, `note = 'changed'`], [exotic, `spot = point(0, 0)`], [moody, `feeling = CASE feeling WHEN 'sad' THEN 'ok'::mood ELSE 'sad'::mood END`]] as const) {
      const leaf = leafName(table.name, SLOT, MODULUS);
      const changed = await right.query(`UPDATE ${leaf} SET ${change} WHERE id = (SELECT min(id) FROM ${leaf})`);
      expect(changed.rowCount).toBe(1);
      const both = await slotStatsOnBoth(left, right, [table], SLOT, MODULUS);
      expect(both.onTarget[0]!.rows).toBe(both.onSource[0]!.rows);
      expect(both.onTarget[0]!.checksum).not.toBe(both.onSource[0]!.checksum);
    }
  });
});
