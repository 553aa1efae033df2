import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { checkAdoption, type AdoptCheckRequest } from '../../src/admin/adoptPreflight.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { setNode } from '../../src/admin/setNode.js';
import { describeConnection, type ConnectionSettings } from '../../src/core/connection.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { accessFor } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Each table a user could try to adopt, built on a real server, and the exact
 * problem line the preflight gives for it; a good table gives none. Nodes n1
 * and n2; the sources are a third server (and a second database on it) and a
 * fourth at wal_level = replica.
 */
describe('adoption preflight on real PostgreSQL', () => {
  let cluster: TestServers;
  let walReplica: TestServers;
  let access: ClusterAccess;
  let source: ConnectionSettings;
  let secondSource: ConnectionSettings;
  let replicaSource: ConnectionSettings;
  let sourceLabel: string;

  const lines = async (request: Omit<AdoptCheckRequest, 'from'> & { from?: ConnectionSettings[] }): Promise<string[]> =>
    (await checkAdoption(access, { from: [source], ...request })).problems.map((problem) => problem.line());

  beforeAll(async () => {
    cluster = await startTestServers(3, 'ap', undefined, 'stock');
    walReplica = await startTestServers(1, 'apr', { wal_level: 'replica', max_wal_senders: '0' });
    access = accessFor(cluster.servers);
    await initCluster(access, 16);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'accounts', shardKey: ['id'], definition: 'id bigint NOT NULL, PRIMARY KEY (id)' });
    source = cluster.servers[2]!.connection;
    sourceLabel = describeConnection(source);
    replicaSource = walReplica.servers[0]!.connection;
    const client = await connectTo(source);
    try {
      await client.query(`
        CREATE TABLE good (id bigserial PRIMARY KEY, email text NOT NULL, score numeric(8,2), UNIQUE (id, email));
        INSERT INTO good (email) SELECT 'u' || g || '@x' FROM generate_series(1, 2000) g;
        CREATE TABLE nopk (id bigint NOT NULL, v text);
        CREATE TABLE pkx (id bigint PRIMARY KEY, tenant bigint NOT NULL);
        CREATE TABLE uq (id bigint PRIMARY KEY, email text UNIQUE);
        CREATE TABLE uqi (id bigint PRIMARY KEY, email text);
        CREATE UNIQUE INDEX uqi_lower_email ON uqi (lower(email));
        CREATE TABLE parent (id bigint PRIMARY KEY);
        CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint REFERENCES parent (id));
        CREATE TABLE vc (code varchar(20) PRIMARY KEY);
        CREATE TABLE ser (id serial PRIMARY KEY, v text);
        CREATE TABLE accounts (id bigint PRIMARY KEY);
        CREATE TABLE byuser (user_id text NOT NULL, id bigint NOT NULL, PRIMARY KEY (user_id, id));
        CREATE VIEW good_view AS SELECT * FROM good;`);
      await client.query('CREATE DATABASE src2');
    } finally {
      await client.end();
    }
    secondSource = { ...source, database: 'src2' };
    const second = await connectTo(secondSource);
    try {
      // The same table with one column of another type and one more column: an app-sharded table whose servers drifted.
      await second.query('CREATE TABLE good (id bigserial PRIMARY KEY, email varchar(200) NOT NULL, score numeric(8,2), extra int, UNIQUE (id, email))');
    } finally {
      await second.end();
    }
    const replica = await connectTo(replicaSource);
    try {
      await replica.query('CREATE TABLE good (id bigint PRIMARY KEY, email text NOT NULL)');
    } finally {
      await replica.end();
    }
    // A table of that name already on node n2 (not a source).
    const n2 = await connectTo(cluster.servers[1]!.connection);
    try {
      await n2.query('CREATE TABLE taken (id bigint PRIMARY KEY)');
    } finally {
      await n2.end();
    }
    const sourceClient = await connectTo(source);
    try {
      await sourceClient.query('CREATE TABLE taken (id bigint PRIMARY KEY)');
    } finally {
      await sourceClient.end();
    }
  }, 180_000);
  afterAll(async () => {
    await walReplica?.stop();
    await cluster?.stop();
  });

  it('finds no problem in a good table, from one source or from two alike', async () => {
    expect(await lines({ name: 'good', key: ['id'] })).toEqual([]);
    const report = await checkAdoption(access, { name: 'good', key: ['id'], from: [source] });
    expect(report.sourceNodes).toEqual([undefined]);
    expect(report.bytes).toBeGreaterThan(8192);
  });

  it('names a missing table, a view, a missing key column', async () => {
    expect(await lines({ name: 'ghost', key: ['id'] })).toEqual([
      `table ghost does not exist on ${sourceLabel}. Fix: check the table name and --schema, and that --from is the database that holds it`,
    ]);
    expect(await lines({ name: 'good_view', key: ['id'] })).toEqual([
      'good_view is a view, not a plain table. Fix: adopt an ordinary table (CREATE TABLE … without PARTITION BY)',
    ]);
    expect(await lines({ name: 'good', key: ['user_id'] })).toEqual([
      'good has no column "user_id" to shard by. Fix: pass --key with one of its columns: id, email, score',
    ]);
  });

  it('refuses no primary key, a primary key without the shard key, a unique constraint or index without it', async () => {
    expect(await lines({ name: 'nopk', key: ['id'] })).toEqual([
      'nopk has no primary key: logical replication needs one to carry UPDATE and DELETE. Fix: ALTER TABLE "nopk" ADD PRIMARY KEY ("id") (it must include the shard key)',
    ]);
    expect(await lines({ name: 'pkx', key: ['tenant'] })).toEqual([
      'the primary key of pkx (id) does not include the shard key (tenant): each node can enforce it only within its own slots. ' +
      'Fix: pass --key with primary key columns (id), or make it include the key: ALTER TABLE "pkx" DROP CONSTRAINT "pkx_pkey", ADD PRIMARY KEY ("tenant", "id")',
    ]);
    expect(await lines({ name: 'uq', key: ['id'] })).toEqual([
      'unique constraint uq_email_key of uq (email) does not include the shard key (id): nodes cannot enforce it across slots. ' +
      'Fix: drop it (ALTER TABLE "uq" DROP CONSTRAINT "uq_email_key"), or replace it by one that includes the key ("id")',
    ]);
    expect(await lines({ name: 'uqi', key: ['id'] })).toEqual([
      'unique index uqi_lower_email of uqi (an expression) does not include the shard key (id): nodes cannot enforce it across slots. ' +
      'Fix: drop it (DROP INDEX "public"."uqi_lower_email"), or replace it by one that includes the key ("id")',
    ]);
  });

  it('names each foreign key, into and out of the table, and what to do', async () => {
    expect(await lines({ name: 'child', key: ['id'] })).toEqual([
      'child holds foreign key child_parent_id_fkey (child (parent_id) → parent (id)): reshard does not keep foreign keys across nodes. ' +
      'Fix: drop it (ALTER TABLE "public"."child" DROP CONSTRAINT "child_parent_id_fkey") before adopting; ' +
      'then adopt parent as a reference table (`reshard table adopt parent --reference --from …`) so joins stay local on every node',
    ]);
    expect(await lines({ name: 'child', key: ['parent_id'] })).toEqual([
      'the primary key of child (id) does not include the shard key (parent_id): each node can enforce it only within its own slots. ' +
      'Fix: pass --key with primary key columns (id), or make it include the key: ALTER TABLE "child" DROP CONSTRAINT "child_pkey", ADD PRIMARY KEY ("parent_id", "id")',
      'child holds foreign key child_parent_id_fkey (child (parent_id) → parent (id)): reshard does not keep foreign keys across nodes. ' +
      'Fix: drop it (ALTER TABLE "public"."child" DROP CONSTRAINT "child_parent_id_fkey") before adopting; ' +
      'then adopt parent as a reference table (`reshard table adopt parent --reference --from …`) so joins stay local on every node, ' +
      'or, since it is keyed by the shard key, adopt it with --key id and child with --colocate-with parent',
    ]);
    expect(await lines({ name: 'parent', key: ['id'] })).toEqual([
      'child holds foreign key child_parent_id_fkey (child (parent_id) → parent (id)) into parent: reshard does not keep foreign keys across nodes. ' +
      'Fix: drop it (ALTER TABLE "public"."child" DROP CONSTRAINT "child_parent_id_fkey") before adopting; ' +
      'then adopt child with --key parent_id --colocate-with parent, so its rows sit on their parent row\'s node',
    ]);
  });

  it('refuses key types it cannot hash like PostgreSQL, and int4 sequences', async () => {
    expect(await lines({ name: 'vc', key: ['code'] })).toEqual([
      'shard key column "code" of vc is character varying(20); reshard routes bigint, integer, text, uuid keys exactly as PostgreSQL hashes them. ' +
      'Fix: ALTER TABLE "vc" ALTER COLUMN "code" TYPE text before adopting, or pass another --key',
    ]);
    expect(await lines({ name: 'ser', key: ['id'] })).toEqual([
      'column "id" of ser is integer fed by sequence public.ser_id_seq: every node draws its own block of 2^48 values, which only bigint holds. ' +
      'Fix: ALTER TABLE "ser" ALTER COLUMN "id" TYPE bigint; ALTER SEQUENCE public.ser_id_seq AS bigint; before adopting',
    ]);
  });

  it('refuses a source below wal_level logical, with the ALTER SYSTEM and restart', async () => {
    const label = describeConnection(replicaSource);
    expect(await lines({ name: 'good', key: ['id'], from: [replicaSource] })).toEqual([
      `wal_level is replica on ${label}: adoption streams the table's changes by logical replication. Fix: run ALTER SYSTEM SET wal_level = logical; on ${label} and restart that server`,
    ]);
  });

  it('refuses a source whose user lacks REPLICATION, or whose replication slots are all taken, with the ALTER ROLE or what to free', async () => {
    const admin = await connectTo(source);
    try {
      await admin.query('CREATE ROLE adopter LOGIN; GRANT SELECT ON good TO adopter');
      const plain = { ...source, user: 'adopter' };
      const label = describeConnection(plain);
      const refused = (await checkAdoption(access, { from: [plain], name: 'good', key: ['id'] })).problems.map((problem) => problem.line());
      // 15: "must be superuser or replication role to start walsender"; 16+: "permission denied to start WAL sender".
      expect(refused).toEqual([expect.stringMatching(new RegExp(`^${escapeRegExp(label)} cannot give reshard a replication connection and slot \\((must be superuser or replication role to start walsender|permission denied to start WAL sender)\\): adoption creates its slot and reads the table's changes over one\\. Fix: run ALTER ROLE "adopter" REPLICATION; on ${escapeRegExp(label)}, or adopt as a user that has it$`))]);

      // Every slot of the stock 10 taken (by another tool's slots, say).
      const { rows } = await admin.query<{ max: string }>("SELECT current_setting('max_replication_slots') AS max");
      await admin.query(`SELECT pg_create_physical_replication_slot('other_' || g) FROM generate_series(1, ${Number(rows[0]!.max)}) g`);
      try {
        expect(await lines({ name: 'good', key: ['id'] })).toEqual([
          `${sourceLabel} cannot give reshard a replication connection and slot (max_replication_slots = ${rows[0]!.max}, all in use): adoption creates its slot and reads the table's changes over one. ` +
            `Fix: free a WAL sender and a replication slot on ${sourceLabel} (drop an unused slot with SELECT pg_drop_replication_slot(…)), or raise max_wal_senders / max_replication_slots and restart it`,
        ]);
      } finally {
        await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'other\\_%'`);
      }
      expect(await lines({ name: 'good', key: ['id'] })).toEqual([]);
    } finally {
      await admin.query('REVOKE ALL ON good FROM adopter; DROP ROLE adopter');
      await admin.end();
    }
  });

  it('needs no `replication` line in pg_hba.conf: a logical replication connection is matched by its database, as the README says', async () => {
    const hbaFile = join(cluster.servers[2]!.dataDir, 'pg_hba.conf');
    const hba = readFileSync(hbaFile, 'utf8');
    const reload = async (): Promise<void> => {
      const client = await connectTo(source);
      try {
        await client.query('SELECT pg_reload_conf()');
      } finally {
        await client.end();
      }
      // The postmaster reads pg_hba.conf again on SIGHUP: give it a moment.
      await new Promise((resolve) => setTimeout(resolve, 300));
    };
    try {
      writeFileSync(hbaFile, hba.split('\n').filter((line) => !/^\s*(host|local)\s+replication\b/.test(line)).join('\n'));
      await reload();
      expect(readFileSync(hbaFile, 'utf8')).not.toMatch(/^\s*(host|local)\s+replication\b/m);
      expect(await lines({ name: 'good', key: ['id'] })).toEqual([]);
    } finally {
      writeFileSync(hbaFile, hba);
      await reload();
    }
  });

  it('compares the columns of several sources', async () => {
    const secondLabel = describeConnection(secondSource);
    expect(await lines({ name: 'good', key: ['id'], from: [source, secondSource] })).toEqual([
      `good differs between ${sourceLabel} and ${secondLabel}: on ${secondLabel} email is character varying(200), not text; an extra column extra integer. ` +
      'Fix: make the table alike on every source (ALTER TABLE …), then adopt',
    ]);
  });

  it('refuses a name the cluster or a node already has, and a colocation of other key types', async () => {
    expect(await lines({ name: 'accounts', key: ['id'] })).toEqual([
      'the cluster already has a table named accounts. Fix: adopt it under another name (rename it on the source first), or drop the cluster\'s table',
      'node n1 already has a relation named accounts. Fix: drop or rename it on n1, or rename the table on the source before adopting',
      'node n2 already has a relation named accounts. Fix: drop or rename it on n2, or rename the table on the source before adopting',
    ]);
    expect(await lines({ name: 'taken', key: ['id'] })).toEqual([
      'node n2 already has a relation named taken. Fix: drop or rename it on n2, or rename the table on the source before adopting',
    ]);
    expect(await lines({ name: 'byuser', key: ['user_id'], colocateWith: 'accounts' })).toEqual([
      'the shard key of byuser is (text) but accounts is keyed by (bigint). Fix: colocate only tables whose keys have the same types, or drop --colocate-with',
    ]);
    expect(await lines({ name: 'byuser', key: ['user_id'], colocateWith: 'nosuch' })).toEqual([
      '--colocate-with nosuch is not a sharded table of the cluster. Fix: name a table from `reshard table list`, or drop --colocate-with',
    ]);
  });

  it('refuses a reference adoption from a server that is not a node', async () => {
    expect(await lines({ name: 'good', key: [], reference: true })).toEqual([
      `${sourceLabel} is not a node of the cluster: an adopted reference table stays where it is, as its holder. ` +
      'Fix: add that server as a node (`reshard node add NAME --url …`) first, or copy the table into a node (pg_dump -t … | psql) and adopt it from there',
    ]);
  });

  it('refuses a table too big for a node\'s free space under the headroom rule', async () => {
    const probe = await connectTo(cluster.servers[0]!.connection);
    let usedBytes: number;
    try {
      usedBytes = Number((await probe.query<{ used: string }>('SELECT sum(pg_database_size(oid))::text AS used FROM pg_database WHERE datallowconn')).rows[0]!.used);
    } finally {
      await probe.end();
    }
    // n1's capacity leaves it room for about nothing past 10 % headroom.
    await setNode(access, { name: 'n1', capacityBytes: Math.ceil(usedBytes / 0.9) + 1024 });
    try {
      const problems = await lines({ name: 'good', key: ['id'] });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^adopting good \(\d+(\.\d+)? [kKM]i?B\) would bring n1 to .* leaving less than the 10 % headroom\. Fix: free space on n1, give it a larger --capacity \(`reshard node set n1 --capacity …`\), add nodes first, or lower --headroom$/);
      expect(await lines({ name: 'good', key: ['id'], headroomFraction: 0 })).toEqual([]);
    } finally {
      await setNode(access, { name: 'n1', capacityBytes: 1024 ** 4 });
    }
  });

  it('as a command: one line per problem, exit non-zero; --json lists them; a good table exits 0', async () => {
    const catalog = catalogUrl(cluster.servers[0]!.connection);
    const from = `postgres://${source.user}@${source.host}:${source.port}/${source.database}`;
    const bad = await runCli(['--catalog', catalog, 'table', 'adopt-check', 'uq', '--from', from, '--key', 'id']);
    expect(bad.code).toBe(1);
    expect(bad.stdout.trim().split('\n')).toEqual([
      'problem: unique constraint uq_email_key of uq (email) does not include the shard key (id): nodes cannot enforce it across slots. ' +
      'Fix: drop it (ALTER TABLE "uq" DROP CONSTRAINT "uq_email_key"), or replace it by one that includes the key ("id")',
      'uq cannot be adopted: 1 problem(s), nothing was changed.',
    ]);
    expect(bad.stderr).toMatch(/^reshard: error: uq cannot be adopted\. Fix: /);
    const json = await runCli(['--catalog', catalog, '--json', 'table', 'adopt-check', 'child', '--from', from, '--key', 'id']);
    expect(json.code).toBe(1);
    const result = JSON.parse(json.stdout.trim().split('\n').at(-1)!) as { adoptable: boolean; problems: { code: string; message: string }[] };
    expect(result.adoptable).toBe(false);
    expect(result.problems.map((problem) => problem.message)).toEqual([
      'child holds foreign key child_parent_id_fkey (child (parent_id) → parent (id)): reshard does not keep foreign keys across nodes',
    ]);
    const good = await runCli(['--catalog', catalog, 'table', 'adopt-check', 'good', '--from', from, '--key', 'id']);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout.trim()).toBe('good can be adopted: no problem found.');
  });
});
