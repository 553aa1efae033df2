import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor, type DoctorFinding } from '../../src/admin/doctor.js';
import { listMigrationHistory } from '../../src/catalog/migrationHistory.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { listShardedTables } from '../../src/catalog/tables.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { slotOf } from '../../src/core/hash.js';
import { generateToken, startDashboard } from '../../src/dashboard/server.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { leafName } from '../../src/node/leafName.js';
import { stageSlotLeaves } from '../../src/node/slotPartitions.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const USERS = 3_000;

interface NodeRow { name: string; state: string; weight: number; slots: number }

function lastJson<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as T;
}

describe('a node is a database, once (invariant 7)', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let url: string;
  /** Direct sessions on the three servers, whatever the catalog says they are. */
  let servers: pg.Client[] = [];

  const cli = (...args: string[]) => runCli(['--catalog', url, ...args]);
  const nodeList = async (): Promise<NodeRow[]> => lastJson<{ nodes: NodeRow[] }>((await cli('--json', 'node', 'list')).stdout).nodes;
  /** users + orders rows attached on each server, read past the catalog. */
  const rowsPerServer = async (): Promise<number[]> => Promise.all(servers.map(async (client) => {
    const result = await client.query<{ rows: string }>('SELECT ((SELECT count(*) FROM users) + (SELECT count(*) FROM orders))::text AS rows');
    return Number(result.rows[0]!.rows);
  }));

  beforeAll(async () => {
    cluster = await startTestServers(3, 'ident');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
    url = catalogUrl(cluster.servers[0]!.connection);
    servers = await Promise.all(cluster.servers.map((server) => connectTo(server.connection)));
  });
  afterAll(async () => {
    await Promise.all(servers.map((client) => client.end().catch(() => {})));
    await cluster?.stop();
  });

  it('node add refuses a second name for one database in one line naming the other node, and records nothing', async () => {
    const before = await nodeList();
    const n1 = cluster.servers[0]!.connection;
    // The same server and database as n1, reached by its host name instead of its IP.
    const alias = await cli('node', 'add', 'n1b', '--url', `postgres://${n1.user}@localhost:${n1.port}/${n1.database}`);
    expect(alias.code).toBe(5);
    expect(alias.stdout).toBe('');
    expect(alias.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^reshard: error: node "n1b" is the same database as node "n1" \(server \d+, database OID \d+\): .*\. Fix: .*"n1"/),
    ]);
    expect(await nodeList()).toEqual(before);

    // A node recorded before identities were kept is identified when the next node is added, and the alias is still refused.
    await servers[0]!.query("UPDATE reshard.node SET system_identifier = NULL, database_oid = NULL WHERE name = 'n1'");
    const again = await cli('node', 'add', 'n1b', '--url', catalogUrl(n1));
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/node "n1b" is the same database as node "n1"/);
    const recorded = await servers[0]!.query<{ system_identifier: string | null }>("SELECT system_identifier FROM reshard.node WHERE name = 'n1'");
    const live = await servers[0]!.query<{ system_identifier: string }>('SELECT system_identifier::text FROM pg_control_system()');
    expect(recorded.rows[0]!.system_identifier).toBe(live.rows[0]!.system_identifier);
    expect(await nodeList()).toEqual(before);

    // An alias recorded before identities were kept (no identity in its row): verify and doctor find it, and doctor says which name to retire.
    await servers[0]!.query(`INSERT INTO reshard.node (name, host, port, database, username, weight, state, concurrency_max)
      VALUES ('n1b', 'localhost', $1, $2, $3, 1, 'active', 2)`, [n1.port, n1.database, n1.user]);
    const verify = await cli('verify');
    expect(verify.code).not.toBe(0);
    expect(verify.stdout).toMatch(/problem: nodes n1 and n1b are the same database \(server \d+, database OID \d+\)/);
    const doctor = await runDoctor(access, { fix: true });
    const duplicates = doctor.findings.filter((entry) => entry.check === 'duplicate_database' && entry.severity === 'error');
    expect(duplicates.map((entry) => entry.node)).toEqual(['n1', 'n1b']);
    for (const entry of duplicates) {
      expect(entry.fix).toMatch(/^keep "n1" \(it owns \d+ slots\) and retire the alias: `reshard node remove n1b` \(it owns none\); never DETACH, DROP or move a leaf/);
    }
    const aliasRow = await servers[0]!.query<{ system_identifier: string | null }>("SELECT system_identifier FROM reshard.node WHERE name = 'n1b'");
    expect(aliasRow.rows[0]!.system_identifier).toBeNull();
    expect((await cli('node', 'remove', 'n1b')).code).toBe(0);
    expect(await nodeList()).toEqual(before);
    expect((await cli('verify')).code).toBe(0);
  });

  it('a node whose URL now reaches another node\'s database is refused by the next move before its first step; verify and doctor report it; the failure stays visible after resume', async () => {
    const rowsBefore = await rowsPerServer();
    expect(rowsBefore.reduce((sum, rows) => sum + rows, 0)).toBe(USERS * 2);
    // A DNS change, as the catalog sees it: n3's address now reaches n2's server.
    const n3Port = cluster.servers[2]!.connection.port;
    await servers[0]!.query("UPDATE reshard.node SET port = $1 WHERE name = 'n3'", [cluster.servers[1]!.connection.port]);

    expect((await cli('node', 'remove', 'n3')).code).toBe(0);
    const stepsOfLatestMigration = async (): Promise<{ id: string; state: string; steps: string; moves: string }> => (await servers[0]!.query<{ id: string; state: string; steps: string; moves: string }>(
      `SELECT m.id::text, m.state, (SELECT count(*) FROM reshard.journal j WHERE j.migration_id = m.id AND j.slot IS NOT NULL)::text AS steps,
              (SELECT string_agg(DISTINCT mv.state, ',') FROM reshard.move mv WHERE mv.migration_id = m.id) AS moves
         FROM reshard.migration m ORDER BY m.id DESC LIMIT 1`)).rows[0]!;

    // The online mover's batches check both ends before they open a publication or stage a leaf.
    const online = await cli('rebalance', '--mode', 'online');
    expect(online.code).not.toBe(0);
    expect(online.stderr).toMatch(/reshard: error: migration \d+ stopped: node "n3" (is the same database as node "n2"|now reaches another database)/);
    expect(await stepsOfLatestMigration()).toMatchObject({ state: 'failed', steps: '0', moves: 'pending' });
    expect(await rowsPerServer()).toEqual(rowsBefore);

    // So do the offline mover's moves.
    const drain = await cli('rebalance', '--mode', 'offline');
    expect(drain.code).not.toBe(0);
    expect(drain.stderr.split('\n').filter((line) => line.startsWith('reshard: error:'))).toEqual([
      expect.stringMatching(/^reshard: error: migration \d+ stopped: node "n3" (is the same database as node "n2"|now reaches another database \(server \d+, database OID \d+\) than the one recorded for it)/),
    ]);
    // Before its first step: nothing journaled for any slot, every move still pending, no row anywhere changed.
    expect(await stepsOfLatestMigration()).toMatchObject({ state: 'failed', steps: '0', moves: 'pending' });
    expect(await rowsPerServer()).toEqual(rowsBefore);

    // A rollback would undo through the same two names: refused as well.
    const rollback = await cli('rollback');
    expect(rollback.code).not.toBe(0);
    expect(rollback.stderr).toMatch(/node "n3" (is the same database as node "n2"|now reaches another database)/);
    expect(await rowsPerServer()).toEqual(rowsBefore);

    const verify = await cli('verify');
    expect(verify.code).not.toBe(0);
    expect(verify.stdout).toMatch(/problem: nodes n2 and n3 are the same database \(server \d+, database OID \d+\)/);
    expect(verify.stdout).toMatch(/problem: node n3 now reaches another database/);

    const doctor = await runDoctor(access, { fix: true });
    const errors = doctor.findings.filter((entry) => entry.severity === 'error');
    const about = (node: string, check: string): DoctorFinding | undefined => errors.find((entry) => entry.node === node && entry.check === check);
    expect(about('n2', 'duplicate_database')?.message).toMatch(/node "n2" is the same database as node "n3"/);
    expect(about('n3', 'duplicate_database')?.message).toMatch(/node "n3" is the same database as node "n2"/);
    // n3's URL is the wrong one: it is pointed back, never merged into n2 (its slots' rows are on its own server).
    for (const node of ['n2', 'n3']) {
      expect(about(node, 'duplicate_database')?.fix).toMatch(/^"n3" now reaches another database than the one recorded for it: point its host and port back .*; never DETACH, DROP or move a leaf between these names/);
    }
    expect(about('n3', 'database_identity')?.message).toMatch(/now reaches another database .* than the one recorded for it/);
    expect(about('n3', 'slot_map_drift')?.message).toMatch(/not judged: this node is the same database as n2/);
    expect(about('n2', 'slot_map_drift')?.message).toMatch(/not judged/);
    for (const entry of doctor.findings) expect(`${entry.message} ${entry.fix ?? ''}`).not.toMatch(/DROP TABLE|DETACH PARTITION|dropped staged leaf/);
    expect(doctor.fixed).toBe(0);
    expect(await rowsPerServer()).toEqual(rowsBefore);

    // The address is put right: resume finishes the drain, and the earlier failure stays in status and history.
    await servers[0]!.query("UPDATE reshard.node SET port = $1 WHERE name = 'n3'", [n3Port]);
    const resumed = await cli('--json', 'resume');
    expect(resumed.stderr).toBe('');
    expect(lastJson<{ state: string }>(resumed.stdout)).toMatchObject({ state: 'completed' });
    expect((await nodeList()).map((node) => `${node.name}:${node.state}`)).toEqual(['n1:active', 'n2:active']);
    expect((await rowsPerServer()).reduce((sum, rows) => sum + rows, 0)).toBe(USERS * 2);
    const verified = await cli('verify');
    expect(verified.code).toBe(0);

    const status = await cli('status');
    expect(status.stdout).toMatch(/: completed, /);
    expect(status.stdout).toMatch(/failed earlier \(1×\); last at \S+: node "n3" (is the same database|now reaches another database)/);
    const statusJson = lastJson<{ migration: { error: string | null; failures: { at: string; error: string }[] } }>((await cli('--json', 'status')).stdout);
    expect(statusJson.migration.error).toBeNull();
    expect(statusJson.migration.failures).toEqual([{ at: expect.any(String), error: expect.stringMatching(/node "n3"/) }]);
    const history = await withCatalog(access, (catalog) => listMigrationHistory(catalog, 1));
    expect(history[0]).toMatchObject({ state: 'completed', error: undefined });
    expect(history[0]!.failures).toEqual([{ at: expect.any(Date), error: expect.stringMatching(/node "n3"/) }]);
    const dashboard = await startDashboard({ access, port: 0, controlToken: generateToken() });
    try {
      const state = await (await fetch(new URL('api/state', dashboard.url))).json() as { history: { state: string; error: string | null; failures: { at: string; error: string }[] }[] };
      expect(state.history[0]).toMatchObject({ state: 'completed', error: null, failures: [{ at: expect.any(String), error: expect.stringMatching(/node "n3"/) }] });
    } finally {
      await dashboard.close();
    }
  });

  it('a rolled-back drain leaves the node draining with weight 0, its state and weight agreeing', async () => {
    // n3 (removed by the drain above) joins again and takes its share.
    expect((await cli('node', 'add', 'n3', '--url', catalogUrl(cluster.servers[2]!.connection))).code).toBe(0);
    expect((await cli('rebalance', '--mode', 'offline')).code).toBe(0);
    const owned = (await nodeList()).find((node) => node.name === 'n3')!.slots;
    expect(owned).toBeGreaterThan(0);

    expect((await cli('node', 'remove', 'n3')).code).toBe(0);
    expect((await cli('rebalance', '--mode', 'offline')).code).toBe(0);
    expect((await nodeList()).map((node) => node.name)).toEqual(['n1', 'n2']);

    const rollback = await cli('rollback');
    expect(rollback.code).toBe(0);
    expect(rollback.stdout).toMatch(/node n3 is still draining/);
    const n3 = (await nodeList()).find((node) => node.name === 'n3');
    // Rollback undid the migration, not the `node remove`: n3 serves its slots again, draining, weight 0.
    expect(n3).toMatchObject({ state: 'draining', weight: 0, slots: owned });
    expect((await cli('verify')).code).toBe(0);
    // The next plan drains it again, as the standing `node remove` asks.
    const plan = lastJson<{ moves: { from: string }[] }>((await cli('--json', 'rebalance', '--dry-run', '--mode', 'offline')).stdout);
    expect(plan.moves.length).toBe(owned);
    expect(plan.moves.every((move) => move.from === 'n3')).toBe(true);
  });

  it('doctor never offers to drop a leaf unless another database has the slot attached with at least as many rows', async () => {
    const { owners, users } = await withCatalog(access, async (catalog) => ({
      owners: (await readSlotMap(catalog)).owners,
      users: (await listShardedTables(catalog)).find((table) => table.name === 'users')!,
    }));
    const slot = owners.indexOf('n1');
    expect(slot).toBeGreaterThanOrEqual(0);
    const [n1, n2] = [servers[0]!, servers[1]!];
    const leaf = leafName('users', slot, SLOTS);
    const ownerRows = (await n1.query(`SELECT id, name, payload, created_at FROM ${leaf}`)).rows as { id: string; name: string; payload: string; created_at: Date }[];
    expect(ownerRows.length).toBeGreaterThan(0);
    const extraId = Array.from({ length: 10_000 }, (_, index) => USERS + 1 + index).find((id) => slotOf('bigint', id, SLOTS) === slot)!;
    /** n1's rows of the slot, and one more that n1 does not have. */
    const copyInto = async (table: string): Promise<void> => {
      for (const row of ownerRows) await n2.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4)`, [row.id, row.name, row.payload, row.created_at]);
      await n2.query(`INSERT INTO ${table} VALUES ($1, 'only here', '', now())`, [extraId]);
    };
    const n2Finding = (report: Awaited<ReturnType<typeof runDoctor>>, check: string): DoctorFinding | undefined =>
      report.findings.find((entry) => entry.node === 'n2' && entry.check === check && entry.severity !== 'ok');
    const leafExistsOnN2 = async (): Promise<boolean> => (await n2.query('SELECT to_regclass($1) IS NOT NULL AS present', [leaf])).rows[0]!.present as boolean;

    // A staged leaf left on n2 with one row more than the owner's: an error, never dropped by --fix.
    await stageSlotLeaves(n2, [users], [slot], SLOTS);
    await copyInto(leaf);
    const staged = await runDoctor(access, { fix: true });
    expect(n2Finding(staged, 'staged_leaf')).toMatchObject({
      severity: 'error', fixed: false,
      message: expect.stringMatching(new RegExp(`${leaf} is an unattached leaf of slot ${slot}, and its owner n1's leaf has ${ownerRows.length} rows and this one ${ownerRows.length + 1}`)),
      fix: expect.not.stringMatching(/DROP TABLE/),
    });
    expect(await leafExistsOnN2()).toBe(true);
    // Once the owner has at least as many rows, it is a leftover: --fix drops it.
    await n2.query(`DELETE FROM ${leaf} WHERE id = $1`, [extraId]);
    const stagedFixed = await runDoctor(access, { fix: true });
    expect(stagedFixed.findings.find((entry) => entry.node === 'n2' && entry.check === 'staged_leaf' && entry.fixed)?.message).toBe(`dropped staged leaf ${leaf}`);
    expect(await leafExistsOnN2()).toBe(false);

    // The same slot attached on n2 too, with a row the owner lacks: no DETACH/DROP offered.
    await n2.query(`CREATE TABLE ${leaf} PARTITION OF users FOR VALUES WITH (MODULUS ${SLOTS}, REMAINDER ${slot})`);
    await copyInto('users');
    const drifted = await runDoctor(access, { fix: true });
    const drift = n2Finding(drifted, 'slot_map_drift')!;
    expect(drift.message).toMatch(new RegExp(`users slot ${slot} \\(${leaf}\\) is attached here, but the slot map gives it to n1`));
    expect(drift.fix).toMatch(new RegExp(`its owner n1's leaf has ${ownerRows.length} rows and this one ${ownerRows.length + 1}, so its rows may live only here: keep it`));
    expect(drift.fix).not.toMatch(/DETACH|DROP/);
    expect(await leafExistsOnN2()).toBe(true);
    await n2.query('DELETE FROM users WHERE id = $1', [extraId]);
    const copy = n2Finding(await runDoctor(access, { fix: false }), 'slot_map_drift')!;
    expect(copy.fix).toMatch(/DETACH PARTITION .* CONCURRENTLY, then DROP TABLE/);
    await n2.query(`ALTER TABLE users DETACH PARTITION ${leaf}`);
    await n2.query(`DROP TABLE ${leaf}`);
    const healthy = await runDoctor(access, { fix: false });
    expect(healthy.findings.filter((entry) => entry.severity === 'error')).toEqual([]);
    expect(healthy.findings.filter((entry) => entry.check === 'duplicate_database').map((entry) => `${entry.node} ${entry.severity}`)).toEqual(['n1 ok', 'n2 ok', 'n3 ok']);
  });
});
