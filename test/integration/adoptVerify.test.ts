import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { adoptTable } from '../../src/admin/adoptTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { ReshardError } from '../../src/core/errors.js';
import type { LocalServer } from '../../src/local/localServer.js';
import type { StepEvent } from '../../src/mover/stepRunner.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { catalogUrl } from '../support/cli.js';
import { startTestServers, type TestServers, queryOnce as sql } from '../support/servers.js';

const SLOTS = 16;
const ROWS = 3000;


/**
 * Runs SQL on a server and waits for it, blocking the event loop: called
 * from a step event (synchronous), the change lands before the next step
 * starts — "behind reshard's back" at an exact point of the adoption.
 */
function sqlNow(server: LocalServer, text: string): void {
  const ran = spawnSync('psql', [catalogUrl(server.connection), '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', text], { encoding: 'utf8', timeout: 30_000 });
  if (ran.status !== 0) throw new Error(`psql failed: ${ran.stderr}`);
}

/** What an adoption left of the row sums: triggers and sums rows on the nodes, anything on the source. */
async function rowSumsLeft(nodes: readonly LocalServer[], source: LocalServer): Promise<{ nodeTriggers: number; nodeSumsRows: number; sourceLeft: boolean }> {
  let nodeTriggers = 0;
  let nodeSumsRows = 0;
  for (const node of nodes) {
    nodeTriggers += (await sql(node, "SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE 'reshard_row_sums%'")).rows[0].n as number;
    nodeSumsRows += (await sql(node, 'SELECT count(*)::int AS n FROM reshard_node.leaf_row_sums')).rows[0].n as number;
  }
  const sourceLeft = (await sql(source, `SELECT to_regclass('reshard_adopt.table_row_sums') IS NOT NULL
      OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'reshard_adopt_row_sums%') AS left`)).rows[0].left as boolean;
  return { nodeTriggers, nodeSumsRows, sourceLeft };
}

describe('reshard table adopt verifies by row sums inside the fence', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let nodes: LocalServer[];
  let source: LocalServer;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'adoptverify');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (let index = 0; index < 3; index++) await addNode(access, { name: `n${index + 1}`, connection: cluster.servers[index]!.connection });
    nodes = cluster.servers.slice(0, 3);
    source = cluster.servers[3]!;
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('proves the copy by the sums (no scan in the cutover) under writes to the source, and ends the sums at cleanup', async () => {
    await sql(source, 'CREATE TABLE wallets (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text, seen timestamptz)');
    await sql(source, `INSERT INTO wallets SELECT g, g % 7, 'seed ' || g, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, ${ROWS}) g`);
    // Writes to the old table all along (inserts, updates, deletes) until the fence: the sums must follow each.
    const writer = new pg.Client({ ...source.connection });
    await writer.connect();
    let writing = true;
    let written = 0;
    const writes = (async () => {
      for (let id = ROWS + 1; writing; id++) {
        try {
          await writer.query('INSERT INTO wallets VALUES ($1, 1, $2, now())', [id, `new ${id}`]);
          await writer.query('UPDATE wallets SET balance = balance + 1, note = note || \'+\' WHERE id = $1', [(id % ROWS) + 1]);
          await writer.query('DELETE FROM wallets WHERE id = $1', [id - 3]);
          written++;
        } catch (error) {
          if ((error as { code?: string }).code === 'RSM01') return;
          throw error;
        }
      }
    })();
    let migrationId: number;
    try {
      const result = await adoptTable(access, { name: 'wallets', from: [catalogUrl(source.connection)], keyColumn: 'id' });
      expect(result.rows).toBeGreaterThan(0);
      migrationId = result.migrationId;
    } finally {
      writing = false;
      await writes;
      await writer.end();
    }
    expect(written).toBeGreaterThan(0);
    const verified = await sql(nodes[0]!, "SELECT detail FROM reshard.journal WHERE migration_id = $1 AND step = 'verify' AND action = 'done'", [migrationId]);
    expect(verified.rows.map((row) => row.detail)).toEqual([{ rows: expect.any(Number), verifiedBy: 'row sums' }]);
    // Every row of the old table (a separate server keeps its name), exactly, on the owners.
    const oldRows = await sql(source, 'SELECT id::text, balance::text, note, seen::text FROM wallets');
    const newRows: string[] = [];
    for (const node of nodes) newRows.push(...(await sql(node, 'SELECT id::text, balance::text, note, seen::text FROM wallets')).rows.map((row) => JSON.stringify(row)));
    expect(newRows.sort()).toEqual(oldRows.rows.map((row) => JSON.stringify(row)).sort());
    expect(await rowSumsLeft(nodes, source)).toEqual({ nodeTriggers: 0, nodeSumsRows: 0, sourceLeft: false });
  }, 300_000);

  // Each row: when a row on an owner is changed behind reshard's back, and how the check sees it.
  const corruptions = [
    { name: 'after the copy, before the sums start (their base scan sees it)', step: 'stream', disableTrigger: false, message: () => /row sums: 3000 rows on the sources, 3000 on the owners, checksums differ\)$/ },
    { name: 'inside the fence, after the final sync (the trigger adds it)', step: 'sync', disableTrigger: false, message: () => /row sums: 3000 rows on the sources, 3000 on the owners, checksums differ\)$/ },
    { name: 'with the sums trigger disabled (the verification scans instead)', step: 'sync', disableTrigger: true, message: (table: string) => new RegExp(`^1 slot\\(s\\) of ${table} differ between the sources and the owners after the final sync \\(first: slot \\d+: (\\d+) rows on the sources, \\1 on the owners, checksums differ\\)$`) },
  ] as const;
  for (const [index, corruption] of corruptions.entries()) {
    it(`catches an owner row changed ${corruption.name} before the switch, and undoes the adoption`, async () => {
      const table = `purses${index}`;
      await sql(source, `CREATE TABLE ${table} (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)`);
      await sql(source, `INSERT INTO ${table} SELECT g, 0, 'seed ' || g FROM generate_series(1, ${ROWS}) g`);
      const steps: string[] = [];
      let corrupted = 0;
      const emit = (event: StepEvent): void => {
        steps.push(`${event.step} ${event.action}`);
        if (event.step !== corruption.step || event.action !== 'done') return;
        for (const node of nodes) {
          const leaf = `${table}_s%`;
          if (corruption.disableTrigger) {
            sqlNow(node, `DO $$ DECLARE l regclass; BEGIN FOR l IN SELECT c.oid::regclass FROM pg_class c JOIN pg_trigger g ON g.tgrelid = c.oid AND g.tgname = 'reshard_row_sums' WHERE c.relname LIKE '${leaf}' LOOP EXECUTE format('ALTER TABLE %s DISABLE TRIGGER reshard_row_sums', l); END LOOP; END $$`);
          }
          // The owner of key 42 holds it; the others update nothing.
          sqlNow(node, `UPDATE ${table}__adopting SET note = 'changed behind reshard''s back' WHERE id = 42`);
        }
        corrupted++;
      };
      let failure: unknown;
      try {
        await adoptTable(access, { name: table, from: [catalogUrl(source.connection)], keyColumn: 'id', emit });
      } catch (error) {
        failure = error;
      }
      expect(corrupted).toBeGreaterThan(0);
      expect(failure).toBeInstanceOf(ReshardError);
      expect((failure as ReshardError).code).toBe('verification_failed');
      expect((failure as ReshardError).message).toMatch(corruption.message(table));
      if (corruption.disableTrigger) expect((failure as ReshardError).message).not.toMatch(/row sums/);
      // Never switched; everything undone.
      expect(steps).not.toContain('switch begin');
      expect(steps).toContain('freeze undone');
      for (const node of nodes) expect((await sql(node, `SELECT to_regclass('${table}__adopting') IS NULL AS gone`)).rows[0].gone).toBe(true);
      expect((await sql(nodes[0]!, 'SELECT count(*)::int AS n FROM reshard.sharded_table WHERE table_name = $1', [table])).rows[0].n).toBe(0);
      expect(await rowSumsLeft(nodes, source)).toEqual({ nodeTriggers: 0, nodeSumsRows: 0, sourceLeft: false });
      // The old table: unfenced, untouched, writable.
      expect((await sql(source, `SELECT count(*)::int AS n FROM ${table} WHERE note LIKE 'seed %'`)).rows[0].n).toBe(ROWS);
      await sql(source, `INSERT INTO ${table} VALUES (${ROWS + 1}, 0, 'still mine')`);
    }, 300_000);
  }
});
