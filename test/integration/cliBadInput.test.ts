import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { runDoctor } from '../../src/admin/doctor.js';
import { rebalance, type MoverModeOption } from '../../src/admin/rebalance.js';
import { createMigration, holdMigration, finishMigration } from '../../src/catalog/migrationRuns.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { ReshardError, type ReshardErrorCode } from '../../src/core/errors.js';
import { Router } from '../../src/router/router.js';
import { runCli, catalogUrl, type CliResult } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/** Everything a bad command could change: the catalog's rows and every node's tables. */
async function fingerprint(clients: readonly pg.Client[]): Promise<string> {
  const parts: string[] = [];
  const catalog = clients[0]!;
  const catalogState = await catalog.query<{ state: string }>(`SELECT concat_ws('|',
      (SELECT string_agg(name || ':' || state || ':' || weight, ',' ORDER BY name) FROM reshard.node),
      (SELECT string_agg(table_name, ',' ORDER BY table_name) FROM reshard.sharded_table),
      (SELECT epoch FROM reshard.cluster),
      (SELECT string_agg(slot || owner || state, ',' ORDER BY slot) FROM reshard.slot),
      (SELECT count(*) FROM reshard.migration),
      (SELECT count(*) FROM reshard.journal)) AS state`);
  parts.push(catalogState.rows[0]!.state);
  for (const client of clients) {
    const tables = await client.query<{ names: string }>(
      `SELECT string_agg(c.relname || ':' || c.relispartition, ',' ORDER BY c.relname) AS names
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'reshard', 'pg_toast') AND c.relkind IN ('r', 'p')`,
    );
    const rows = await client.query<{ rows: string }>('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders) AS rows');
    parts.push(`${tables.rows[0]!.names}#${rows.rows[0]!.rows}`);
  }
  return parts.join('\n');
}

function expectOneLineError(result: CliResult, pattern: RegExp): void {
  expect(result.code).not.toBe(0);
  const lines = result.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^reshard: error: .+\. Fix: .+/);
  expect(lines[0]).toMatch(pattern);
}

describe('CLI bad input: one clear line, non-zero exit, nothing changed', () => {
  let cluster: TestServers;
  let clients: pg.Client[];
  let catalog: string;
  let before: string;

  beforeAll(async () => {
    cluster = await startTestServers(3, 'bad');
    const access = await createDemoCluster(cluster.servers, 2, 16);
    await loadDemoRows(access, 500);
    clients = [await connectTo(cluster.servers[0]!.connection), await connectTo(cluster.servers[1]!.connection)];
    catalog = catalogUrl(cluster.servers[0]!.connection);
    before = await fingerprint(clients);
  });
  afterAll(async () => {
    await Promise.all((clients ?? []).map((client) => client.end()));
    await cluster?.stop();
  });

  const cases: { name: string; args: () => string[]; error: RegExp; code?: number }[] = [
    { name: 'unreachable catalog', args: () => ['--catalog', 'postgres://postgres@127.0.0.1:1/postgres', 'node', 'list'], error: /catalog at postgres@127\.0\.0\.1:1\/postgres is unreachable/, code: 3 },
    { name: 'unreachable node', args: () => ['--catalog', catalog, 'node', 'add', 'far', '--url', 'postgres://postgres:s3cret@127.0.0.1:1/postgres'], error: /node "far" at postgres@127\.0\.0\.1:1\/postgres is unreachable/, code: 3 },
    { name: 'duplicate node name', args: () => ['--catalog', catalog, 'node', 'add', 'n1', '--url', catalogUrl(cluster.servers[2]!.connection)], error: /a node named "n1" already exists/, code: 5 },
    { name: 'node name with spaces and quotes', args: () => ['--catalog', catalog, 'node', 'add', `n 1'; DROP TABLE users;--`, '--url', catalogUrl(cluster.servers[2]!.connection)], error: /node name .* is not allowed/, code: 2 },
    { name: 'unknown node', args: () => ['--catalog', catalog, 'node', 'remove', 'nope'], error: /no node named "nope".*use one of: n1, n2/, code: 4 },
    { name: 'table without a primary key', args: () => ['--catalog', catalog, 'table', 'create', 'events', '--key', 'id', '--columns', 'id bigint NOT NULL, body text'], error: /table "events" has no primary key/, code: 2 },
    { name: 'primary key without the shard key', args: () => ['--catalog', catalog, 'table', 'create', 'events', '--key', 'account', '--columns', 'id bigint, account bigint, PRIMARY KEY (id)'], error: /primary key of "events" does not include the shard key/, code: 2 },
    { name: 'unsupported shard key type', args: () => ['--catalog', catalog, 'table', 'create', 'events', '--key', 'at', '--columns', 'at timestamptz, PRIMARY KEY (at)'], error: /type timestamp with time zone, which reshard cannot shard by/, code: 6 },
    { name: 'a second statement smuggled into the definition', args: () => ['--catalog', catalog, 'table', 'create', 'events', '--key', 'id', '--columns', 'id bigint PRIMARY KEY); DROP TABLE users; --'], error: /definition of "events"/, code: 2 },
    { name: 'shard key column not in the table', args: () => ['--catalog', catalog, 'table', 'create', 'events', '--key', 'missing', '--columns', 'id bigint PRIMARY KEY'], error: /names a column that is not in its definition/, code: 2 },
    { name: 'colocating with an unknown table', args: () => ['--catalog', catalog, 'table', 'create', 'events', '--key', 'id', '--columns', 'id bigint PRIMARY KEY', '--colocate-with', 'ghost'], error: /no sharded table named "ghost"/, code: 4 },
    { name: 'slots not a positive integer (plan)', args: () => ['plan', '--nodes', '3', '--add', '1', '--slots', '-4'], error: /--slots must be a whole number/, code: 2 },
    { name: 'slots not a positive integer (init)', args: () => ['--catalog', catalog, 'init', '--slots', '2.5'], error: /--slots must be a whole number/, code: 2 },
    { name: 'init with another slot count', args: () => ['--catalog', catalog, 'init', '--slots', '32'], error: /already has 16 slots, not 32/, code: 5 },
    { name: 'unknown migration', args: () => ['--catalog', catalog, 'status', '--migration', '999'], error: /no migration with id 999/, code: 4 },
    { name: 'concurrency not a positive integer', args: () => ['--catalog', catalog, 'rebalance', '--concurrency', '0'], error: /--concurrency must be a whole number ≥ 1/, code: 2 },
    { name: 'a config file that does not validate', args: () => ['--config', writeConfig({ catalog: 42 }), 'node', 'list'], error: /config file .* is invalid at catalog/, code: 2 },
    { name: 'a config file with unknown keys', args: () => ['--config', writeConfig({ catalog: catalog, pasword: {} }), 'node', 'list'], error: /config file .* is invalid/, code: 2 },
    { name: 'a config file that is not JSON', args: () => ['--config', writeRaw('{ catalog: '), 'node', 'list'], error: /is not valid JSON/, code: 2 },
    { name: 'no catalog at all', args: () => ['node', 'list'], error: /no catalog database was given/, code: 2 },
    { name: 'catalog that is not a URL', args: () => ['--catalog', 'db.example.com', 'node', 'list'], error: /--catalog is neither a postgres:\/\/ URL nor key=value pairs/, code: 2 },
    { name: 'a misspelt libpq parameter', args: () => ['--catalog', catalog, 'node', 'add', 'n9', '--url', `${catalogUrl(cluster.servers[2]!.connection)}?sslmod=require`], error: /--url has the parameter "sslmod", which reshard does not support/, code: 2 },
    { name: 'an sslmode libpq does not have', args: () => ['--catalog', 'host=127.0.0.1 sslmode=on', 'node', 'list'], error: /--catalog has sslmode "on"/, code: 2 },
    { name: 'node concurrency of 0', args: () => ['--catalog', catalog, 'node', 'add', 'n9', '--url', catalogUrl(cluster.servers[2]!.connection), '--concurrency', '0'], error: /--concurrency must be a whole number ≥ 1, got "0"/, code: 2 },
    { name: 'a config file with a value of the wrong type', args: () => ['--config', writeConfig({ catalog, passwords: { n1: 5 } }), 'node', 'list'], error: /config file .* is invalid at passwords\.n1/, code: 2 },
    { name: 'a mover that does not exist', args: () => ['--catalog', catalog, 'rebalance', '--mode', 'sideways'], error: /argument 'sideways' is invalid\. Allowed choices are online, offline/, code: 2 },
    { name: 'an unknown command', args: () => ['--catalog', catalog, 'frobnicate'], error: /unknown command 'frobnicate'/, code: 2 },
    { name: 'a slot outside the slot map', args: () => ['--catalog', catalog, 'slot', '16'], error: /slot 16 does not exist; the cluster has slots 0 to 15/, code: 2 },
  ];

  function writeConfig(value: unknown): string {
    return writeRaw(JSON.stringify(value));
  }
  function writeRaw(text: string): string {
    const path = join(cluster.baseDir, `config-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(path, text);
    return path;
  }

  for (const testCase of cases) {
    it(testCase.name, async () => {
      const result = await runCli(testCase.args());
      expectOneLineError(result, testCase.error);
      if (testCase.code !== undefined) expect(result.code).toBe(testCase.code);
      expect(result.stderr).not.toContain('s3cret');
      expect(await fingerprint(clients)).toBe(before);
    });
  }

  it('refuses to remove the last node of a cluster', async () => {
    // A second, one-node cluster whose catalog and node are the third server.
    const soloUrl = catalogUrl(cluster.servers[2]!.connection);
    expect((await runCli(['--catalog', soloUrl, 'init', '--slots', '8'])).code).toBe(0);
    expect((await runCli(['--catalog', soloUrl, 'node', 'add', 'solo', '--url', soloUrl])).code).toBe(0);
    const result = await runCli(['--catalog', soloUrl, 'node', 'remove', 'solo']);
    expectOneLineError(result, /"solo" is the last node of the cluster/);
    const listed = await runCli(['--catalog', soloUrl, '--json', 'node', 'list']);
    expect(JSON.parse(listed.stdout.trim()).nodes).toMatchObject([{ name: 'solo', state: 'active', slots: 8 }]);
  });

  it('refuses to remove a node whose slots have nowhere to go', async () => {
    // n2 is the only other node: weighting it to 0 via draining n2 first leaves n1's slots nowhere.
    await clients[0]!.query("UPDATE reshard.node SET weight = 0 WHERE name = 'n2'");
    const stranded = await runCli(['--catalog', catalog, 'node', 'remove', 'n1']);
    expectOneLineError(stranded, /the \d+ slots of "n1" have nowhere to go/);
    await clients[0]!.query("UPDATE reshard.node SET weight = 1 WHERE name = 'n2'");
    expect(await fingerprint(clients)).toBe(before);
  });

  it('refuses a second rebalance while one runs, and names an interrupted one', async () => {
    const holder = await connectTo(cluster.servers[0]!.connection);
    const migrationId = await createMigration(holder, { mode: 'offline', baseEpoch: 1, plan: {}, moves: [] });
    try {
      expect(await holdMigration(holder, migrationId)).toBe(true);
      const running = await runCli(['--catalog', catalog, 'rebalance']);
      expectOneLineError(running, new RegExp(`migration ${migrationId} is already running`));
      expect(running.code).toBe(5);
      await holder.query('SELECT pg_advisory_unlock_all()');
      const interrupted = await runCli(['--catalog', catalog, 'rebalance']);
      expectOneLineError(interrupted, new RegExp(`migration ${migrationId} was interrupted.*reshard resume`));
    } finally {
      await finishMigration(holder, migrationId, 'cancelled');
      await holder.end();
    }
  });

  // The tests below compare with the state right before them: the migration test above leaves a cancelled migration.
  it('doctor with an unreachable node reports it as a finding, not a crash', async () => {
    const start = await fingerprint(clients);
    // A node that went down after it was added (recorded directly: `node add` refuses an unreachable server).
    await clients[0]!.query("INSERT INTO reshard.node (name, host, port, database, username) VALUES ('ghost', '127.0.0.1', 1, 'postgres', 'postgres')");
    try {
      const result = await runCli(['--catalog', catalog, 'doctor'], { PGPASSWORD: 's3cret' });
      expectOneLineError(result, /doctor found 1 error\(s\)/);
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/^error +ghost +reachable +node "ghost" at postgres@127\.0\.0\.1:1\/postgres is unreachable .*\. Fix: check that the server runs/m);
      expect(result.stdout).toMatch(/^ok +n1 +slot_map_drift/m);
      expect(result.stdout).not.toContain('s3cret');
      const library = await runDoctor({ catalog: cluster.servers[0]!.connection, passwords: () => 's3cret' }, { fix: true });
      expect(library.findings.filter((entry) => entry.severity !== 'ok')).toEqual([
        expect.objectContaining({ severity: 'error', node: 'ghost', check: 'reachable', fixed: false }),
      ]);
      expect(JSON.stringify(library)).not.toContain('s3cret');
    } finally {
      await clients[0]!.query("DELETE FROM reshard.node WHERE name = 'ghost'");
    }
    expect(await fingerprint(clients)).toBe(start);
  });

  it('two `node add` of the same name at once: exactly one succeeds, the catalog stays consistent', async () => {
    const start = await fingerprint(clients);
    // Each racer gets a database of its own on the third server, so a loser's leftovers would show.
    const third = await connectTo(cluster.servers[2]!.connection);
    try {
      for (const database of ['race_a', 'race_b']) await third.query(`CREATE DATABASE ${database}`);
      const url = (database: string): string => catalogUrl({ ...cluster.servers[2]!.connection, database });
      const results = await Promise.all(['race_a', 'race_b'].map((database) => runCli(['--catalog', catalog, 'node', 'add', 'racer', '--url', url(database)])));
      expect(results.map((result) => result.code).sort()).toEqual([0, 5]);
      const loser = results.find((result) => result.code !== 0)!;
      expectOneLineError(loser, /a node named "racer" already exists/);
      const rows = await clients[0]!.query<{ name: string; database: string; state: string }>("SELECT name, database, state FROM reshard.node WHERE name = 'racer'");
      expect(rows.rows).toHaveLength(1);
      const winner = rows.rows[0]!.database;
      expect(winner).toBe(results[0]!.code === 0 ? 'race_a' : 'race_b');
      // The winner's database has the parents; the loser's was left untouched.
      for (const database of ['race_a', 'race_b']) {
        const client = await connectTo({ ...cluster.servers[2]!.connection, database });
        try {
          const parents = await client.query<{ count: string }>("SELECT count(*) FROM pg_class WHERE relname IN ('users', 'orders')");
          expect(parents.rows[0]!.count, database).toBe(database === winner ? '2' : '0');
        } finally {
          await client.end();
        }
      }
    } finally {
      await clients[0]!.query("DELETE FROM reshard.node WHERE name = 'racer'");
      for (const database of ['race_a', 'race_b']) await third.query(`DROP DATABASE IF EXISTS ${database}`);
      await third.end();
    }
    expect(await fingerprint(clients)).toBe(start);
  });

  describe('library calls: a ReshardError with code, message and fix, nothing changed', () => {
    const access = (): ClusterAccess => ({ catalog: cluster.servers[0]!.connection, passwords: () => undefined });
    const libraryCases: { name: string; call: () => Promise<unknown>; code: ReshardErrorCode; message: RegExp; fix: RegExp }[] = [
      { name: 'Router.connect with an unreachable catalog',
        call: () => Router.connect({ catalog: { host: '127.0.0.1', port: 1, database: 'postgres', user: 'postgres', password: 's3cret' } }),
        code: 'unreachable', message: /catalog at postgres@127\.0\.0\.1:1\/postgres is unreachable/, fix: /check that the server runs/ },
      { name: 'rebalance with moveConcurrencyMax 0',
        call: () => rebalance(access(), { mode: 'offline', dryRun: false, moveConcurrencyMax: 0, emit: () => {} }),
        code: 'bad_input', message: /moveConcurrencyMax must be a whole number ≥ 1, got 0/, fix: /moveConcurrencyMax: 4/ },
      { name: 'rebalance with a mode that is not a mover',
        call: () => rebalance(access(), { mode: 'sideways' as MoverModeOption, dryRun: false, moveConcurrencyMax: 4, emit: () => {} }),
        code: 'bad_input', message: /mode "sideways" is not a mover/, fix: /'online' or 'offline'/ },
      { name: 'createShardedTable with a name too long for its leaves',
        call: () => createShardedTable(access(), { name: 'e'.repeat(60), shardKey: ['id'], definition: 'id bigint PRIMARY KEY' }),
        code: 'bad_input', message: /partition name "e{60}_s0015" is longer than 63 bytes/, fix: /shorter name/ },
      { name: 'createShardedTable with an empty definition',
        call: () => createShardedTable(access(), { name: 'events', shardKey: ['id'], definition: '  ' }),
        code: 'bad_input', message: /the table has no column definition/, fix: /--columns/ },
      { name: 'addNode with a negative weight',
        call: () => addNode(access(), { name: 'n9', connection: cluster.servers[2]!.connection, weight: -1 }),
        code: 'bad_input', message: /--weight must be a number ≥ 0, got -1/, fix: /--weight 1/ },
    ];
    for (const testCase of libraryCases) {
      it(testCase.name, async () => {
        const start = await fingerprint(clients);
        const error = await testCase.call().then(() => undefined, (caught: unknown) => caught);
        expect(error).toBeInstanceOf(ReshardError);
        const reshardError = error as ReshardError;
        expect({ code: reshardError.code, message: reshardError.message, fix: reshardError.fix }).toEqual({
          code: testCase.code, message: expect.stringMatching(testCase.message), fix: expect.stringMatching(testCase.fix),
        });
        expect(reshardError.line()).not.toContain('s3cret');
        expect(await fingerprint(clients)).toBe(start);
      });
    }
  });

  it('quotes hostile table names instead of running them', async () => {
    const hostile = `Robert"); DROP TABLE users; --`;
    const result = await runCli(['--catalog', catalog, 'table', 'create', hostile, '--key', 'id', '--columns', 'id bigint PRIMARY KEY, note text']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (const client of clients) {
      const present = await client.query<{ users: boolean; hostile: boolean }>(
        `SELECT to_regclass('users') IS NOT NULL AS users, to_regclass($1) IS NOT NULL AS hostile`, [`"${hostile.replaceAll('"', '""')}"`],
      );
      expect(present.rows[0]).toEqual({ users: true, hostile: true });
    }
    const tables = await runCli(['--catalog', catalog, '--json', 'table', 'list']);
    expect(JSON.parse(tables.stdout.trim()).tables.map((t: { table: string }) => t.table)).toContain(hostile);
  });
});
