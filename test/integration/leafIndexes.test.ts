import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteQualified } from '../../src/core/identifier.js';
import { leafName } from '../../src/node/leafName.js';
import { buildLeafIndexesLikeParent, dropStagedLeafIndexes } from '../../src/node/leafIndexes.js';
import { stageSlotLeaves } from '../../src/node/slotPartitions.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/**
 * A staged leaf loaded without indexes gets its parent's afterwards: the
 * primary key and a unique constraint as constraints, a partial, an
 * expression and an INCLUDE index as the same definitions, so that ATTACH
 * attaches every one of them and builds none (the leaf ends with exactly the
 * parent's indexes, each a partition of the parent's). An attached leaf
 * never drops its indexes.
 */
describe('a staged leaf\'s indexes built after its copy', () => {
  const MODULUS = 4;
  const SLOT = 1;
  const table = { schema: 'app data', name: 'Users', shardKey: ['id'] };
  const parent = '"app data"."Users"';
  const leaf = quoteQualified('app data', leafName('Users', SLOT, MODULUS));
  let servers: TestServers | undefined;
  let db: pg.Client;

  beforeAll(async () => {
    servers = await startTestServers(1, 'leafindexes');
    db = await connectTo(servers.servers[0]!.connection);
    await db.query('CREATE SCHEMA "app data"');
    await db.query(`CREATE TABLE ${parent} (id bigint NOT NULL, email text NOT NULL, tenant int NOT NULL, note text, PRIMARY KEY (id), UNIQUE (tenant, id)) PARTITION BY HASH (id)`);
    await db.query(`CREATE INDEX users_email ON ${parent} (email)`);
    await db.query(`CREATE INDEX "lower email, noted" ON ${parent} (lower(email)) INCLUDE (tenant) WHERE note IS NOT NULL`);
    for (let slot = 0; slot < MODULUS; slot++) {
      if (slot !== SLOT) await db.query(`CREATE TABLE ${quoteQualified('app data', leafName('Users', slot, MODULUS))} PARTITION OF ${parent} FOR VALUES WITH (MODULUS ${MODULUS}, REMAINDER ${slot})`);
    }
  }, 120_000);

  afterAll(async () => {
    await db?.end();
    await servers?.stop();
  });

  const indexesOf = async (relation: string): Promise<{ count: number; attached: number }> => {
    const result = await db.query<{ count: string; attached: string }>(
      `SELECT count(*) AS count, count(*) FILTER (WHERE x.relispartition) AS attached FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = $1::regclass`, [relation]);
    return { count: Number(result.rows[0]!.count), attached: Number(result.rows[0]!.attached) };
  };

  it('drops the staged leaf\'s indexes, builds the parent\'s after the rows are in, and ATTACH builds none', async () => {
    await stageSlotLeaves(db, [table], [SLOT], MODULUS);
    expect((await indexesOf(leaf)).count).toBe(4);
    await dropStagedLeafIndexes(db, leaf);
    expect((await indexesOf(leaf)).count).toBe(0);
    await db.query(`INSERT INTO ${leaf} SELECT k, 'user' || k || '@example.com', k % 7, CASE WHEN k % 2 = 0 THEN 'n' END
                      FROM generate_series(1, 5000) k WHERE satisfies_hash_partition('${parent}'::regclass, ${MODULUS}, ${SLOT}, k::bigint)`);
    await buildLeafIndexesLikeParent(db, parent, leaf);
    expect((await indexesOf(leaf)).count).toBe(4);
    const constraints = await db.query<{ contype: string }>(`SELECT contype FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY contype`, [leaf]);
    expect(constraints.rows.map((row) => row.contype)).toEqual(['p', 'u']);

    await db.query(`ALTER TABLE ${parent} ATTACH PARTITION ${leaf} FOR VALUES WITH (MODULUS ${MODULUS}, REMAINDER ${SLOT})`);
    // Every index the leaf has is one it built before the ATTACH, now a partition of the parent's.
    expect(await indexesOf(leaf)).toEqual({ count: 4, attached: 4 });
  });

  it('refuses to drop an attached leaf\'s indexes', async () => {
    await expect(dropStagedLeafIndexes(db, leaf)).rejects.toThrow(/is attached/);
    expect((await indexesOf(leaf)).count).toBe(4);
  });
});
