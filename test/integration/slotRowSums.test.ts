import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReshardError } from '../../src/core/errors.js';
import { verifySlotCopyFromSums } from '../../src/mover/verifySlotCopy.js';
import { leafName } from '../../src/node/leafName.js';
import { installNodeHelpers } from '../../src/node/nodeHelpers.js';
import { slotRowSums, trackSlotRows, untrackSlotRows } from '../../src/node/slotRowSums.js';
import { slotStats } from '../../src/node/slotStats.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/**
 * The row sums that let a cutover verify inside its freeze without a scan:
 * after `trackSlotRows`, the sums equal what a scan counts and checksums,
 * whatever is written, also by a replica-role session (the apply worker's
 * role); a TRUNCATE or `untrackSlotRows` ends them; and the verification
 * from sums catches a row that differs, changed before the sums began or
 * after.
 */
describe('slot row sums on real PostgreSQL', () => {
  const MODULUS = 8;
  const SLOT = 5;
  const plain = { schema: 'public', name: 'plain', shardKey: ['id'] };
  // json has no extended hash: hashed by text form, never summed (scanned instead).
  const exotic = { schema: 'public', name: 'exotic', shardKey: ['id'] };
  const tables = [plain, exotic];
  let servers: TestServers | undefined;
  let left: pg.Client;
  let right: pg.Client;
  const leaf = (name: string): string => leafName(name, SLOT, MODULUS);

  async function createTables(client: pg.Client): Promise<void> {
    await installNodeHelpers(client);
    await client.query(`CREATE TABLE plain (id bigint PRIMARY KEY, note text, amount numeric(12, 2)) PARTITION BY HASH (id)`);
    await client.query(`CREATE TABLE exotic (id bigint PRIMARY KEY, doc json) PARTITION BY HASH (id)`);
    for (const name of ['plain', 'exotic']) {
      await client.query(`CREATE TABLE ${leaf(name)} PARTITION OF ${name} FOR VALUES WITH (MODULUS ${MODULUS}, REMAINDER ${SLOT})`);
    }
    const keys = `(SELECT k FROM generate_series(1, 20000) k WHERE satisfies_hash_partition('plain'::regclass, ${MODULUS}, ${SLOT}, k::bigint) ORDER BY k LIMIT 300) g(g)`;
    await client.query(`INSERT INTO ${leaf('plain')} SELECT g, 'note ' || g, g / 7.0 FROM ${keys}`);
    await client.query(`INSERT INTO ${leaf('exotic')} SELECT g, json_build_object('g', g) FROM ${keys}`);
  }

  /** The sums as the scan would report them: rows and checksum. */
  const counted = (stats: readonly { rows: number; checksum: string }[]): { rows: number; checksum: string }[] => stats.map(({ rows, checksum }) => ({ rows, checksum }));

  beforeAll(async () => {
    servers = await startTestServers(2, 'sums');
    left = await connectTo(servers.servers[0]!.connection);
    right = await connectTo(servers.servers[1]!.connection);
    await createTables(left);
    await createTables(right);
  }, 120_000);

  afterAll(async () => {
    await left?.end();
    await right?.end();
    await servers?.stop();
  });

  it('sums what a scan counts and checksums, through inserts, updates, deletes and a replica-role writer; json tables stay scanned', async () => {
    expect(await trackSlotRows(left, tables, SLOT, MODULUS, 1000)).toEqual([true, false]);
    const expectSumsEqualScan = async (): Promise<void> => {
      const sums = await slotRowSums(left, [plain], SLOT, MODULUS);
      expect(sums[0]!.tracked).toBe(true);
      expect(counted(sums)).toEqual(counted(await slotStats(left, [plain], SLOT, MODULUS)));
    };
    await expectSumsEqualScan();
    const plainLeaf = leaf('plain');
    await left.query(`UPDATE ${plainLeaf} SET note = note || '!' WHERE id % 3 = 0`);
    await left.query(`DELETE FROM ${plainLeaf} WHERE id % 5 = 0`);
    await left.query(`INSERT INTO plain SELECT k, 'late', 1 FROM generate_series(100000, 101000) k WHERE satisfies_hash_partition('plain'::regclass, ${MODULUS}, ${SLOT}, k::bigint)`);
    await expectSumsEqualScan();
    // The subscription's apply worker runs as a replica: the trigger fires always.
    await left.query(`BEGIN; SET LOCAL session_replication_role = replica; UPDATE ${plainLeaf} SET amount = amount + 1 WHERE id % 2 = 0; COMMIT`);
    await expectSumsEqualScan();
    // A second start takes a fresh base and stays equal.
    await trackSlotRows(left, tables, SLOT, MODULUS, 1000);
    await expectSumsEqualScan();
    expect((await slotRowSums(left, [exotic], SLOT, MODULUS))[0]!.tracked).toBe(false);
  });

  it('a TRUNCATE and untrackSlotRows end the sums (the verification then scans)', async () => {
    await left.query('CREATE TABLE plain_copy (LIKE plain)');
    await left.query(`INSERT INTO plain_copy SELECT * FROM ${leaf('plain')}`);
    await trackSlotRows(left, tables, SLOT, MODULUS, 1000);
    await left.query(`TRUNCATE ${leaf('plain')}`);
    expect((await slotRowSums(left, [plain], SLOT, MODULUS))[0]!.tracked).toBe(false);
    await left.query(`INSERT INTO ${leaf('plain')} SELECT * FROM plain_copy`);
    await trackSlotRows(left, tables, SLOT, MODULUS, 1000);
    expect((await slotRowSums(left, [plain], SLOT, MODULUS))[0]!.tracked).toBe(true);
    await untrackSlotRows(left, tables, SLOT, MODULUS);
    expect((await slotRowSums(left, [plain], SLOT, MODULUS))[0]!.tracked).toBe(false);
    const left_over = await left.query<{ n: string }>(`SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'reshard_row_sums%') + (SELECT count(*) FROM reshard_node.leaf_row_sums) AS n`);
    expect(Number(left_over.rows[0]!.n)).toBe(0);
    await left.query('DROP TABLE plain_copy');
  });

  it('the verification from sums passes on equal slots and catches a target row changed before the sums began or after', async () => {
    // The right side as a copy of the left, as after the snapshot copy.
    for (const name of ['plain', 'exotic']) {
      // Each row by its text form: the json keeps its exact text.
      const rows = await left.query<{ row: string }>(`SELECT t::text AS row FROM ${leaf(name)} t`);
      await right.query(`TRUNCATE ${leaf(name)}`);
      await right.query(`INSERT INTO ${leaf(name)} SELECT (r::${leaf(name)}).* FROM unnest($1::text[]) r`, [rows.rows.map((row) => row.row)]);
    }
    const context = { migrationId: 0, modulus: MODULUS, tables, sourceName: 'left', targetName: 'right', source: left, target: right, catalog: left };
    const track = async (): Promise<void> => {
      await Promise.all([left, right].map((side) => trackSlotRows(side, tables, SLOT, MODULUS, 1000)));
    };
    await track();
    // Writes to both sides after the sums began (the source's writers, the subscription's apply) keep them equal.
    for (const side of [left, right]) await side.query(`UPDATE ${leaf('plain')} SET note = 'both' WHERE id % 4 = 1`);
    const equal = await verifySlotCopyFromSums(context, SLOT, 'the test');
    expect(equal).toMatchObject({ bySums: 1, byScan: 1 });
    expect(equal.rows).toBe(Number((await left.query(`SELECT (SELECT count(*) FROM ${leaf('plain')}) + (SELECT count(*) FROM ${leaf('exotic')}) AS n`)).rows[0]!.n));

    // After the sums began: one value changed on the target only, by a replica-role session.
    await right.query(`BEGIN; SET LOCAL session_replication_role = replica; UPDATE ${leaf('plain')} SET amount = amount + 0.01 WHERE id = (SELECT min(id) FROM ${leaf('plain')}); COMMIT`);
    const after = await verifySlotCopyFromSums(context, SLOT, 'the test').catch((error: unknown) => error);
    expect(after).toBeInstanceOf(ReshardError);
    expect((after as ReshardError).message).toMatch(/slot 5 of plain differs after the test: left has \d+ rows, right has \d+ \(checksums differ\)/);

    // Before the sums began: the base scan sees the changed row.
    await untrackSlotRows(right, tables, SLOT, MODULUS);
    await untrackSlotRows(left, tables, SLOT, MODULUS);
    await track();
    await expect(verifySlotCopyFromSums(context, SLOT, 'the test')).rejects.toThrow(/slot 5 of plain differs/);

    // A missing row (same checksum otherwise impossible): caught by the count.
    await right.query(`UPDATE ${leaf('plain')} p SET amount = l.amount FROM json_populate_recordset(NULL::${leaf('plain')}, $1) l WHERE l.id = p.id`,
      [JSON.stringify((await left.query(`SELECT * FROM ${leaf('plain')}`)).rows)]);
    expect(await verifySlotCopyFromSums(context, SLOT, 'the test')).toMatchObject({ bySums: 1 });
    await right.query(`DELETE FROM ${leaf('plain')} WHERE id = (SELECT max(id) FROM ${leaf('plain')})`);
    await expect(verifySlotCopyFromSums(context, SLOT, 'the test')).rejects.toThrow(/left has (\d+) rows, right has (?!\1)\d+/);
  });
});
