import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { runDoctor, type DoctorFinding, type DoctorReport } from '../../src/admin/doctor.js';
import { quoteLiteral } from '../../src/core/identifier.js';
import { createMigration, finishMigration } from '../../src/catalog/migrationRuns.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { listShardedTables } from '../../src/catalog/tables.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { withCatalog } from '../../src/plumbing/clusterAccess.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../../src/local/localServer.js';
import { fenceSlot } from '../../src/node/fence.js';
import { trackSlotRows } from '../../src/node/slotRowSums.js';
import { subscriptionConninfo } from '../../src/node/replication.js';
import { stageSlotLeaves } from '../../src/node/slotPartitions.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;

function problems(report: DoctorReport): DoctorFinding[] {
  return report.findings.filter((entry) => entry.severity !== 'ok');
}

/** What --fix must never change: the catalog's nodes, slot map and epoch, and on every node the attached leaves and their rows. */
async function fingerprint(clients: readonly pg.Client[]): Promise<string> {
  const parts: string[] = [];
  const catalog = await clients[0]!.query<{ state: string }>(`SELECT concat_ws('|',
      (SELECT string_agg(name || ':' || state || ':' || weight, ',' ORDER BY name) FROM reshard.node),
      (SELECT epoch FROM reshard.cluster),
      (SELECT string_agg(slot || owner || state, ',' ORDER BY slot) FROM reshard.slot),
      (SELECT count(*) FROM reshard.migration)) AS state`);
  parts.push(catalog.rows[0]!.state);
  for (const client of clients) {
    const attached = await client.query<{ leaves: string | null }>(
      `SELECT string_agg(c.relname, ',' ORDER BY c.relname) AS leaves FROM pg_class c WHERE c.relispartition`);
    const rows = await client.query<{ rows: string }>('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders) AS rows');
    parts.push(`${attached.rows[0]!.leaves}#${rows.rows[0]!.rows}`);
  }
  return parts.join('\n');
}

describe('reshard doctor on real PostgreSQL', () => {
  let cluster: TestServers;
  let replicaBase: string;
  let replica: LocalServer | undefined;
  let access: ClusterAccess;
  let catalog: string;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    cluster = await startTestServers(2, 'doc');
    access = await createDemoCluster(cluster.servers, 2, SLOTS);
    await loadDemoRows(access, 400);
    catalog = catalogUrl(cluster.servers[0]!.connection);
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
    await cluster?.stop();
    await replica?.stop('fast');
    if (replicaBase) removeServerDirectory(replicaBase);
  });

  it('finds nothing wrong with a healthy cluster', async () => {
    const report = await runDoctor(access, { fix: false });
    expect(problems(report)).toEqual([]);
    expect(report.errors).toBe(0);
    // Every check has its ok line for the catalog or each node.
    expect(report.findings.filter((entry) => entry.node === 'n1').map((entry) => entry.check)).toEqual(expect.arrayContaining([
      'wal_level', 'privileges', 'replication_slots', 'logical_workers', 'wal_retrieve_retry_interval', 'timeouts', 'replica_identity',
      'orphan_subscription', 'orphan_replication_slot', 'orphan_publication', 'fence_trigger', 'change_trigger', 'staged_leaf', 'slot_map_drift',
    ]));
    const cli = await runCli(['--catalog', catalog, 'doctor']);
    expect(cli.code).toBe(0);
    expect(cli.stderr).toBe('');
    expect(cli.stdout).toMatch(/doctor: 0 error\(s\), 0 warning\(s\)/);
    const json = await runCli(['--catalog', catalog, '--json', 'doctor']);
    expect(json.code).toBe(0);
    const result = JSON.parse(json.stdout.trim()) as { findings: DoctorFinding[]; errors: number };
    expect(result.errors).toBe(0);
    expect(result.findings.every((entry) => entry.severity === 'ok' && entry.fix === null)).toBe(true);
  });

  it('reports every seeded fault with its fix; --fix removes only the leftovers', async () => {
    // A third node with wal_level=replica and a slow wal_retrieve_retry_interval, added as n3 (it owns nothing yet).
    replicaBase = mkdtempSync(join(tmpdir(), 'reshard-test-doctor-'));
    replica = await startLocalServer({ name: 'docreplica', baseDir: replicaBase, settings: { wal_level: 'replica', wal_retrieve_retry_interval: '5s' } });
    await addNode(access, { name: 'n3', connection: replica.connection });
    const [n1, n2, n3] = [await connectTo(cluster.servers[0]!.connection), await connectTo(cluster.servers[1]!.connection), await connectTo(replica.connection)];
    clients.push(n1, n2, n3);
    const { owners, tables } = await withCatalog(access, async (db) => ({ owners: (await readSlotMap(db)).owners, tables: await listShardedTables(db) }));
    const users = tables.find((table) => table.name === 'users')!;
    const slotsOf = (node: string): number[] => owners.flatMap((owner, slot) => (owner === node ? [slot] : []));
    const [orphanSlot, fencedSlot, recordingSlot] = slotsOf('n1');
    const [detachedSlot, strayAttachedSlot] = slotsOf('n2');
    const pad = (slot: number | undefined): string => String(slot).padStart(4, '0');

    // An aborted move n1 → n2: publication on n1, staged leaf and a live subscription (with its slot on n1) on n2.
    await n1.query(`CREATE PUBLICATION reshard_m999_s${orphanSlot} FOR TABLE users_s${pad(orphanSlot)}`);
    await stageSlotLeaves(n2, [users], [orphanSlot!], SLOTS);
    await n2.query(`CREATE SUBSCRIPTION reshard_m999_s${orphanSlot} CONNECTION ${quoteLiteral(subscriptionConninfo(cluster.servers[0]!.connection))}
      PUBLICATION reshard_m999_s${orphanSlot} WITH (copy_data = false)`);
    // A replication slot nobody streams from.
    await n1.query("SELECT pg_create_logical_replication_slot('reshard_m998_s1', 'pgoutput')");
    // A fence left on n1's users leaf of one of its slots; a move's row sums left on another's.
    await fenceSlot(n1, [users], fencedSlot!, SLOTS);
    await trackSlotRows(n1, [users], recordingSlot!, SLOTS, 5_000);
    // Drift: a slot detached on its owner n2; another of n2's slots attached on n1 too.
    await n2.query(`ALTER TABLE users DETACH PARTITION users_s${pad(detachedSlot)}`);
    await n1.query(`CREATE TABLE orders_s${pad(strayAttachedSlot)} PARTITION OF orders FOR VALUES WITH (MODULUS ${SLOTS}, REMAINDER ${strayAttachedSlot})`);
    // n3 lost the primary key of orders; n2's role gets a short idle-in-transaction timeout.
    const pkey = await n3.query<{ conname: string }>("SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'p'");
    await n3.query(`ALTER TABLE orders DROP CONSTRAINT ${pkey.rows[0]!.conname}`);
    await n2.query("ALTER ROLE postgres SET idle_in_transaction_session_timeout = '5s'");

    const expected: { severity: string; node: string; check: string; message: RegExp; fix: RegExp }[] = [
      { severity: 'error', node: 'n1', check: 'orphan_replication_slot', message: new RegExp(`reshard_m999_s${orphanSlot} \\(migration 999 is not running\\) pins WAL`), fix: /pg_drop_replication_slot/ },
      { severity: 'error', node: 'n1', check: 'orphan_replication_slot', message: /reshard_m998_s1 \(migration 998 is not running\)/, fix: /pg_drop_replication_slot\('reshard_m998_s1'\)/ },
      { severity: 'warning', node: 'n1', check: 'orphan_publication', message: new RegExp(`publication reshard_m999_s${orphanSlot}`), fix: /DROP PUBLICATION/ },
      { severity: 'error', node: 'n1', check: 'fence_trigger', message: new RegExp(`users_s${pad(fencedSlot)} is still fenced`), fix: /DROP TRIGGER reshard_fence ON/ },
      { severity: 'warning', node: 'n1', check: 'change_trigger', message: new RegExp(`users_s${pad(recordingSlot)} still records its changes for a move or a split that is over \\(reshard_row_sums, reshard_row_sums_truncate\\)`), fix: /DROP TRIGGER reshard_row_sums ON .*; DROP TRIGGER reshard_row_sums_truncate ON/ },
      { severity: 'error', node: 'n1', check: 'slot_map_drift', message: new RegExp(`orders slot ${strayAttachedSlot} \\(orders_s${pad(strayAttachedSlot)}\\) is attached here, but the slot map gives it to n2`), fix: /DETACH PARTITION .* CONCURRENTLY/ },
      { severity: 'error', node: 'n2', check: 'orphan_subscription', message: new RegExp(`subscription reshard_m999_s${orphanSlot}`), fix: /DROP SUBSCRIPTION/ },
      { severity: 'warning', node: 'n2', check: 'staged_leaf', message: new RegExp(`users_s${pad(orphanSlot)} is a staged leaf of slot ${orphanSlot}`), fix: /DROP TABLE/ },
      { severity: 'error', node: 'n2', check: 'slot_map_drift', message: new RegExp(`users slot ${detachedSlot} is owned by this node but not attached here`), fix: new RegExp(`ATTACH PARTITION "public"."users_s${pad(detachedSlot)}" FOR VALUES WITH \\(MODULUS ${SLOTS}, REMAINDER ${detachedSlot}\\)`) },
      { severity: 'warning', node: 'n2', check: 'timeouts', message: /idle_in_transaction_session_timeout=5s, set for the role/, fix: /ALTER ROLE "postgres" IN DATABASE "postgres" SET idle_in_transaction_session_timeout = 0/ },
      { severity: 'error', node: 'n3', check: 'wal_level', message: /wal_level=replica/, fix: /wal_level = logical/ },
      { severity: 'warning', node: 'n3', check: 'wal_retrieve_retry_interval', message: /5000 ms/, fix: /100ms/ },
      { severity: 'error', node: 'n3', check: 'replica_identity', message: /orders has no primary key/, fix: /ALTER TABLE "public"."orders" ADD PRIMARY KEY \("user_id", "id"\) \(as on the other nodes\)/ },
    ];
    const matchesExactly = (found: DoctorFinding[]): void => {
      const unmatched = [...expected];
      for (const entry of found) {
        const index = unmatched.findIndex((want) => want.severity === entry.severity && want.node === entry.node && want.check === entry.check
          && want.message.test(entry.message) && want.fix.test(entry.fix ?? ''));
        expect(index, `unexpected finding ${JSON.stringify(entry)}`).toBeGreaterThanOrEqual(0);
        unmatched.splice(index, 1);
      }
      expect(unmatched.map((want) => `${want.node} ${want.check} ${want.message}`)).toEqual([]);
    };

    const broken = await runDoctor(access, { fix: false });
    matchesExactly(problems(broken));
    expect(broken.errors).toBe(8);
    expect(broken.warnings).toBe(5);

    // The CLI: one line per finding on stdout, one error line on stderr, non-zero exit.
    const cli = await runCli(['--catalog', catalog, 'doctor']);
    console.log(`doctor on the seeded broken cluster:\n${cli.stdout}${cli.stderr}`);
    expect(cli.code).toBe(1);
    expect(cli.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^reshard: error: doctor found 8 error\(s\)\. Fix: /)]);
    expect(cli.stdout).toMatch(/^error +n1 +orphan_replication_slot +orphaned replication slot reshard_m998_s1 .*\. Fix: /m);
    expect(cli.stdout.trim().split('\n')).toHaveLength(broken.findings.length + 1);
    const json = await runCli(['--catalog', catalog, '--json', 'doctor']);
    expect(json.code).toBe(1);
    const parsed = JSON.parse(json.stdout.trim().split('\n').at(-1)!) as { findings: DoctorFinding[]; errors: number };
    expect(parsed.errors).toBe(8);
    matchesExactly(parsed.findings.filter((entry) => entry.severity !== 'ok'));

    // --fix removes the seven leftovers, reports each, and changes nothing else.
    const before = await fingerprint([n1, n2, n3]);
    const fixed = await runCli(['--catalog', catalog, 'doctor', '--fix']);
    console.log(`doctor --fix:\n${fixed.stdout}${fixed.stderr}`);
    expect(fixed.code).toBe(1);
    const fixedLines = fixed.stdout.split('\n').filter((line) => line.startsWith('fixed'));
    expect(fixedLines).toHaveLength(7);
    for (const pattern of [
      new RegExp(`n2 +orphan_subscription +dropped subscription reshard_m999_s${orphanSlot}`),
      /n1 +orphan_replication_slot +dropped replication slot reshard_m998_s1/,
      new RegExp(`n1 +orphan_replication_slot +dropped replication slot reshard_m999_s${orphanSlot}`),
      new RegExp(`n1 +orphan_publication +dropped publication reshard_m999_s${orphanSlot}`),
      new RegExp(`n1 +fence_trigger +removed the fence triggers of users_s${pad(fencedSlot)}`),
      new RegExp(`n1 +change_trigger +removed the change-recording triggers of users_s${pad(recordingSlot)}`),
      new RegExp(`n2 +staged_leaf +dropped staged leaf users_s${pad(orphanSlot)}`),
    ]) expect(fixedLines.some((line) => pattern.test(line)), String(pattern)).toBe(true);
    expect(fixed.stdout).toMatch(/doctor: 4 error\(s\), 2 warning\(s\), 7 fixed/);
    expect(await fingerprint([n1, n2, n3])).toBe(before);

    const after = await runDoctor(access, { fix: false });
    expect(problems(after).map((entry) => `${entry.severity} ${entry.node} ${entry.check}`).sort()).toEqual([
      'error n1 slot_map_drift', 'error n2 slot_map_drift', 'error n3 replica_identity', 'error n3 wal_level',
      'warning n2 timeouts', 'warning n3 wal_retrieve_retry_interval',
    ]);
    const fences = await n1.query<{ count: string }>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'reshard_fence%' OR tgname LIKE 'reshard_row_sums%'");
    expect(fences.rows[0]!.count).toBe('0');
    expect((await n1.query<{ count: string }>('SELECT count(*) FROM reshard_node.leaf_row_sums')).rows[0]!.count).toBe('0');
    for (const [client, server] of [[n1, 'n1'], [n2, 'n2']] as const) {
      const left = await client.query<{ objects: string }>(`SELECT concat_ws(',',
          (SELECT string_agg(pubname, ',') FROM pg_publication), (SELECT string_agg(subname, ',') FROM pg_subscription),
          (SELECT string_agg(slot_name, ',') FROM pg_replication_slots)) AS objects`);
      expect(left.rows[0]!.objects, server).toBe('');
    }
  });
  it('leaves alone what a migration in flight owns; --fix removes it once the migration is over', async () => {
    const [n1, n2] = clients;
    const { owners, tables, epoch } = await withCatalog(access, async (db) => {
      const slotMap = await readSlotMap(db);
      return { owners: slotMap.owners, epoch: slotMap.epoch, tables: await listShardedTables(db) };
    });
    const users = tables.find((table) => table.name === 'users')!;
    const slot = owners.flatMap((owner, candidate) => (owner === 'n1' ? [candidate] : []))[2]!;
    const migrationId = await withCatalog(access, (db) => createMigration(db, {
      mode: 'online', baseEpoch: epoch, plan: {}, moves: [{ slot, source: 'n1', target: 'n2', wave: 0, bytesTotal: 0 }],
    }));
    const name = `reshard_m${migrationId}_s${slot}`;
    await n1!.query(`CREATE PUBLICATION ${name} FOR TABLE users_s${String(slot).padStart(4, '0')}`);
    await n1!.query(`SELECT pg_create_logical_replication_slot('${name}', 'pgoutput')`);
    await fenceSlot(n1!, [users], slot, SLOTS);
    await stageSlotLeaves(n2!, [users], [slot], SLOTS);
    const leftovers = (report: DoctorReport): string[] => problems(report)
      .filter((entry) => ['orphan_publication', 'orphan_replication_slot', 'fence_trigger', 'staged_leaf', 'slot_map_drift'].includes(entry.check) && entry.message.includes(String(slot)))
      .map((entry) => `${entry.fixed ? 'fixed' : entry.severity} ${entry.node} ${entry.check}`);

    // Interrupted (running, nobody holds it): its objects are kept, and resume or rollback is suggested.
    const kept = await runDoctor(access, { fix: true });
    expect(leftovers(kept)).toEqual([]);
    expect(problems(kept)).toContainEqual(expect.objectContaining({ node: 'catalog', check: 'migration', severity: 'warning', message: expect.stringMatching(`migration ${migrationId} was interrupted`) }));

    // Once it is over they are leftovers, and --fix removes them.
    await withCatalog(access, (db) => finishMigration(db, migrationId, 'cancelled'));
    const removed = await runDoctor(access, { fix: true });
    expect(leftovers(removed).sort()).toEqual(['fixed n1 fence_trigger', 'fixed n1 orphan_publication', 'fixed n1 orphan_replication_slot', 'fixed n2 staged_leaf']);
    expect(leftovers(await runDoctor(access, { fix: false }))).toEqual([]);
  });
});
