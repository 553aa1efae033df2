import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leafStats, slotStatsOnBoth } from '../../src/node/slotStats.js';
import { leafName } from '../../src/node/leafName.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import type pg from 'pg';

/**
 * The verification's checksums: hashed by record where every column type has
 * an extended hash function, by text form on both sides where one does not,
 * and equal exactly when the two leaves hold the same rows.
 */
describe('slot checksums on real PostgreSQL', () => {
  const MODULUS = 8;
  const SLOT = 3;
  const plain = { schema: 'public', name: 'plain', shardKey: ['id'] };
  // point and json have no extended hash function: hash_record_extended refuses them.
  const exotic = { schema: 'public', name: 'exotic', shardKey: ['id'] };
  let servers: TestServers | undefined;
  let left: pg.Client;
  let right: pg.Client;

  async function createLeaves(client: pg.Client): Promise<void> {
    await client.query(`CREATE TABLE ${leafName('plain', SLOT, MODULUS)} (id bigint PRIMARY KEY, note text, at timestamptz)`);
    await client.query(`CREATE TABLE ${leafName('exotic', SLOT, MODULUS)} (id bigint PRIMARY KEY, spot point, doc json)`);
  }

  async function fill(client: pg.Client, order: 'asc' | 'desc'): Promise<void> {
    await client.query(`INSERT INTO ${leafName('plain', SLOT, MODULUS)} SELECT g, 'note ' || g, '2026-01-01'::timestamptz + g * interval '1 min' FROM generate_series(1, 500) g ORDER BY g ${order}`);
    await client.query(`INSERT INTO ${leafName('exotic', SLOT, MODULUS)} SELECT g, point(g, -g), json_build_object('g', g) FROM generate_series(1, 200) g ORDER BY g ${order}`);
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
    await createLeaves(left);
    await createLeaves(right);
  }, 120_000);

  afterAll(async () => {
    await left?.end();
    await right?.end();
    await servers?.stop();
  });

  it('both sides empty: equal, hashed by record (no row reaches a missing hash function)', async () => {
    const both = await slotStatsOnBoth(left, right, [plain, exotic], SLOT, MODULUS);
    expect(both.rowHash).toBe('record');
    expect(both.onSource).toEqual([{ rows: 0, checksum: '0' }, { rows: 0, checksum: '0' }]);
    expect(both.onTarget).toEqual(both.onSource);
  });

  it('one side filled, the other empty: falls back to text form on both, and tells them apart', async () => {
    await fill(left, 'asc');
    const both = await slotStatsOnBoth(left, right, [plain, exotic], SLOT, MODULUS);
    expect(both.rowHash).toBe('text');
    expect(both.onSource.map((stats) => stats.rows)).toEqual([500, 200]);
    expect(both.onTarget).toEqual([{ rows: 0, checksum: '0' }, { rows: 0, checksum: '0' }]);
  });

  it('the same rows inserted in another order: equal checksums, both ways of hashing', async () => {
    await fill(right, 'desc');
    const both = await slotStatsOnBoth(left, right, [plain, exotic], SLOT, MODULUS);
    expect(both.rowHash).toBe('text');
    expect(both.onTarget).toEqual(both.onSource);
    const plainOnly = await slotStatsOnBoth(left, right, [plain], SLOT, MODULUS);
    expect(plainOnly.rowHash).toBe('record');
    expect(plainOnly.onTarget).toEqual(plainOnly.onSource);
    expect(plainOnly.onSource[0]!.checksum).not.toBe(both.onSource[0]!.checksum);
    expect((await leafStats(left, exotic, SLOT, MODULUS)).rowHash).toBe('text');
    expect((await leafStats(left, plain, SLOT, MODULUS))).toEqual({ ...plainOnly.onSource[0], rowHash: 'record' });
  });

  it('one changed value, with the row count unchanged, changes the checksum', async () => {
    for (const [table, change] of [[plain, `note = 'changed'`], [exotic, `spot = point(0, 0)`]] as const) {
      const leaf = leafName(table.name, SLOT, MODULUS);
      await right.query(`UPDATE ${leaf} SET ${change} WHERE id = 42`);
      const both = await slotStatsOnBoth(left, right, [table], SLOT, MODULUS);
      expect(both.onTarget[0]!.rows).toBe(both.onSource[0]!.rows);
      expect(both.onTarget[0]!.checksum).not.toBe(both.onSource[0]!.checksum);
    }
  });
});
