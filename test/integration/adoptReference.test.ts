import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { readReferenceTables } from '../../src/admin/referenceTables.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { NOT_HOLDER_SQLSTATE } from '../../src/node/referenceTable.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { accessFor } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const REPLICATION_WAIT_MS = 30_000;

/** Rows of `plans` on one server, as one ordered fingerprint. */
async function plansOn(server: LocalServer): Promise<string> {
  const client = await connectTo(server.connection);
  try {
    return (await client.query<{ rows: string }>("SELECT coalesce(string_agg(code || '=' || price || '/' || note, ',' ORDER BY code), '') AS rows FROM plans")).rows[0]!.rows;
  } finally {
    await client.end();
  }
}

async function columnsOn(server: LocalServer): Promise<string[]> {
  const client = await connectTo(server.connection);
  try {
    const result = await client.query<{ column: string }>(
      "SELECT attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END AS column FROM pg_attribute WHERE attrelid = 'plans'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum");
    return result.rows.map((row) => row.column);
  } finally {
    await client.end();
  }
}

async function waitForSameRows(servers: readonly LocalServer[], holder: LocalServer): Promise<void> {
  const deadline = performance.now() + REPLICATION_WAIT_MS;
  for (;;) {
    const expected = await plansOn(holder);
    const seen = await Promise.all(servers.map(plansOn));
    if (seen.every((rows) => rows === expected)) return;
    if (performance.now() > deadline) expect(seen).toEqual(servers.map(() => expected));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * `table adopt --reference`: a plain table on node n2 becomes a reference
 * table held by n2, while a writer keeps inserting into it there; every
 * other node (and one added later) gets a copy that equals it.
 */
describe('adopting a plain table as a reference table', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: string;
  let n2Url: string;

  beforeAll(async () => {
    cluster = await startTestServers(3, 'ar');
    access = accessFor(cluster.servers);
    catalog = catalogUrl(cluster.servers[0]!.connection);
    n2Url = catalogUrl(cluster.servers[1]!.connection);
    await initCluster(access, 16);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    const n2 = await connectTo(cluster.servers[1]!.connection);
    try {
      await n2.query(`
        CREATE TABLE plans (code text PRIMARY KEY, price numeric(10,2) NOT NULL CHECK (price >= 0), note text NOT NULL DEFAULT 'none', serial_no bigserial);
        INSERT INTO plans (code, price) SELECT 'p' || lpad(g::text, 4, '0'), g * 1.5 FROM generate_series(1, 200) g;
        CREATE TABLE flags (name text NOT NULL, enabled boolean);
        CREATE TABLE plan_items (id bigint PRIMARY KEY, plan_code text REFERENCES plans (code));
        CREATE TABLE plan_notes (plan_code text NOT NULL CONSTRAINT notes_plan REFERENCES plans (code), note text);`);
    } finally {
      await n2.end();
    }
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses a table without a primary key and one with a foreign key out of it, one line each, changing nothing', async () => {
    const noKey = await runCli(['--catalog', catalog, 'table', 'adopt', 'flags', '--reference', '--from', n2Url]);
    expect(noKey.code).toBe(7);
    expect(noKey.stderr.trim().split('\n')).toEqual([
      'reshard: error: flags has no primary key: logical replication needs one to carry UPDATE and DELETE. Fix: ALTER TABLE "flags" ADD PRIMARY KEY (…)',
    ]);
    const foreign = await runCli(['--catalog', catalog, 'table', 'adopt', 'plan_items', '--reference', '--from', n2Url]);
    expect(foreign.code).toBe(7);
    expect(foreign.stderr.trim().split('\n')).toEqual([
      'reshard: error: plan_items holds foreign key plan_items_plan_code_fkey (plan_items (plan_code) → plans (code)): reshard does not keep foreign keys across nodes. ' +
      'Fix: drop it (ALTER TABLE "public"."plan_items" DROP CONSTRAINT "plan_items_plan_code_fkey") before adopting; ' +
      'adopt plans first (`reshard table adopt plans --reference --from …`) so every copy finds the rows it references',
    ]);
    // Two problems: each on its own line, then the summary.
    const both = await runCli(['--catalog', catalog, 'table', 'adopt', 'plan_notes', '--reference', '--from', n2Url]);
    expect(both.code).toBe(7);
    expect(both.stderr.trim().split('\n')).toEqual([
      'reshard: error: plan_notes has no primary key: logical replication needs one to carry UPDATE and DELETE. Fix: ALTER TABLE "plan_notes" ADD PRIMARY KEY (…)',
      'reshard: error: plan_notes holds foreign key notes_plan (plan_notes (plan_code) → plans (code)): reshard does not keep foreign keys across nodes. ' +
      'Fix: drop it (ALTER TABLE "public"."plan_notes" DROP CONSTRAINT "notes_plan") before adopting; ' +
      'adopt plans first (`reshard table adopt plans --reference --from …`) so every copy finds the rows it references',
      'reshard: error: plan_notes cannot be adopted: 2 problems, the first: plan_notes has no primary key: logical replication needs one to carry UPDATE and DELETE. ' +
      'Fix: ALTER TABLE "plan_notes" ADD PRIMARY KEY (…); `reshard table adopt-check` lists them all',
    ]);
    expect(await readReferenceTables(access)).toEqual([]);
    const n1 = await connectTo(cluster.servers[0]!.connection);
    try {
      expect((await n1.query("SELECT to_regclass('flags') AS a, to_regclass('plan_items') AS b, to_regclass('plan_notes') AS c")).rows[0]).toEqual({ a: null, b: null, c: null });
    } finally {
      await n1.end();
    }
  });

  it('adopts it in place on its node while a writer keeps inserting there; every copy ends equal', async () => {
    // The application's writer: plain INSERTs on n2, before, during and after the adoption.
    const writer = await connectTo(cluster.servers[1]!.connection);
    let writing = true;
    let written = 0;
    const writes = (async () => {
      while (writing && written < 5_000) {
        await writer.query('INSERT INTO plans (code, price) VALUES ($1, $2)', [`w${String(written).padStart(5, '0')}`, (written % 50) + 0.25]);
        written++;
      }
    })();
    try {
      const adopted = await runCli(['--catalog', catalog, '--json', 'table', 'adopt', 'plans', '--reference', '--from', n2Url]);
      expect(adopted.stderr).toBe('');
      expect(adopted.code).toBe(0);
      expect(JSON.parse(adopted.stdout.trim().split('\n').at(-1)!)).toEqual({ table: 'plans', kind: 'reference', holder: 'n2', adopted: true });
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      writing = false;
      await writes;
      await writer.end();
    }
    expect(written).toBeGreaterThan(0);
    await waitForSameRows([cluster.servers[0]!], cluster.servers[1]!);
    expect((await plansOn(cluster.servers[0]!)).split(',')).toHaveLength(200 + written);
    // The copy has the holder's columns; the sequence default stays on the holder only.
    expect(await columnsOn(cluster.servers[0]!)).toEqual(await columnsOn(cluster.servers[1]!));
    expect(await readReferenceTables(access)).toEqual([expect.objectContaining({ schema: 'public', name: 'plans', holder: 'n2' })]);
    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    expect(report.referenceRowsByTable).toEqual({ plans: 200 + written });
  });

  it('keeps the copies read-only, carries later writes, and copies to a node added later', async () => {
    const n1 = await connectTo(cluster.servers[0]!.connection);
    try {
      const refused = await n1.query("INSERT INTO plans (code, price) VALUES ('x', 1)").catch((error: unknown) => error as { code?: string });
      expect((refused as { code?: string }).code).toBe(NOT_HOLDER_SQLSTATE);
    } finally {
      await n1.end();
    }
    const n2 = await connectTo(cluster.servers[1]!.connection);
    try {
      await n2.query("UPDATE plans SET note = 'changed' WHERE code = 'p0001'");
      await n2.query("DELETE FROM plans WHERE code = 'p0002'");
    } finally {
      await n2.end();
    }
    await addNode(access, { name: 'n3', connection: cluster.servers[2]!.connection });
    await waitForSameRows([cluster.servers[0]!, cluster.servers[2]!], cluster.servers[1]!);
    expect(await plansOn(cluster.servers[2]!)).toMatch(/p0001=1\.50\/changed,p0003=/);
    expect((await verifyCluster(access)).problems).toEqual([]);
  });
});
