import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { runDoctor } from '../../src/admin/doctor.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { moveReferenceHolder } from '../../src/admin/referenceHolder.js';
import { createReferenceTable, readReferenceTables } from '../../src/admin/referenceTables.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { ReshardError } from '../../src/core/errors.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { isReferenceReplicationName, NOT_HOLDER_SQLSTATE, referenceSubscriptionName } from '../../src/node/referenceTable.js';
import { migrationReplicationPrefix, reshardReplicationObjects } from '../../src/node/replication.js';
import { readReplicationSettings } from '../../src/node/inspectNode.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { Router } from '../../src/router/router.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { accessFor } from '../support/cluster.js';
import { leftoverReplicationObjects } from '../support/leftovers.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 32;
const ORDERS = 1_200;
const PLANS = [
  { code: 'free', price: '0.00' },
  { code: 'pro', price: '12.50' },
  { code: 'team', price: '40.00' },
  { code: 'enterprise', price: '199.99' },
];
const REPLICATION_WAIT_MS = 30_000;

/** Each order's plan and amount, as written: the global answer every node's local join must add up to. */
function orderOf(id: number): { planCode: string; amount: string } {
  return { planCode: PLANS[id % PLANS.length]!.code, amount: `${(id % 97) + 1}.25` };
}

/** Rows and an order-independent fingerprint of `plans` on one server. */
async function plansOn(server: LocalServer): Promise<string> {
  const client = await connectTo(server.connection);
  try {
    const result = await client.query<{ rows: string }>("SELECT coalesce(string_agg(code || '=' || price, ',' ORDER BY code), '') AS rows FROM plans");
    return result.rows[0]!.rows;
  } finally {
    await client.end();
  }
}

/** The reference publication, subscriptions and replication slots on one server (deduplicated, sorted). */
async function referenceObjectsOn(server: LocalServer): Promise<string[]> {
  const client = await connectTo(server.connection);
  try {
    const objects = await reshardReplicationObjects(client);
    return [...new Set([...objects.publications, ...objects.subscriptions, ...objects.slots])].filter(isReferenceReplicationName).sort();
  } finally {
    await client.end();
  }
}

const EXPECTED_PLANS = [...PLANS].sort((a, b) => a.code.localeCompare(b.code)).map((plan) => `${plan.code}=${plan.price}`).join(',');

const WITH_STARTER = [...PLANS, { code: 'starter', price: '5.00' }].sort((a, b) => a.code.localeCompare(b.code)).map((plan) => `${plan.code}=${plan.price}`).join(',');

async function waitForPlansEverywhere(servers: readonly LocalServer[], expected: string): Promise<void> {
  const deadline = performance.now() + REPLICATION_WAIT_MS;
  for (;;) {
    const seen = await Promise.all(servers.map(plansOn));
    if (seen.every((rows) => rows === expected)) return;
    if (performance.now() > deadline) {
      // Only the differences: the rows one copy lacks or has too many.
      const want = new Set(expected.split(','));
      expect(seen.map((rows, index) => {
        const have = new Set(rows.split(','));
        return `${index}: missing ${[...want].filter((row) => !have.has(row)).join(' ')}; extra ${[...have].filter((row) => !want.has(row)).join(' ')}`;
      })).toEqual(servers.map((_, index) => `${index}: missing ; extra `));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Per plan: orders and their amount, from a join run on each node alone, summed over the nodes. */
async function localJoinTotals(router: Router): Promise<{ perPlan: Record<string, { orders: number; amount: string }>; unmatched: number }> {
  const perNode = await router.eachNode(async (client) => {
    const joined = await client.query<{ code: string; orders: string; amount: string }>(
      'SELECT p.code, count(*)::text AS orders, sum(o.amount)::text AS amount FROM orders o JOIN plans p ON p.code = o.plan_code GROUP BY p.code');
    const unmatched = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM orders o WHERE NOT EXISTS (SELECT 1 FROM plans p WHERE p.code = o.plan_code)');
    return { rows: joined.rows, unmatched: Number(unmatched.rows[0]!.n) };
  });
  const perPlan: Record<string, { orders: number; cents: number }> = {};
  let unmatched = 0;
  for (const { rows, unmatched: missing } of perNode.values()) {
    unmatched += missing;
    for (const row of rows) {
      const entry = perPlan[row.code] ?? { orders: 0, cents: 0 };
      entry.orders += Number(row.orders);
      entry.cents += Math.round(Number(row.amount) * 100);
      perPlan[row.code] = entry;
    }
  }
  return { perPlan: Object.fromEntries(Object.entries(perPlan).map(([code, entry]) => [code, { orders: entry.orders, amount: (entry.cents / 100).toFixed(2) }])), unmatched };
}

function globalJoinTotals(): Record<string, { orders: number; amount: string }> {
  const cents: Record<string, { orders: number; cents: number }> = {};
  for (let id = 1; id <= ORDERS; id++) {
    const { planCode, amount } = orderOf(id);
    const entry = cents[planCode] ?? { orders: 0, cents: 0 };
    entry.orders += 1;
    entry.cents += Math.round(Number(amount) * 100);
    cents[planCode] = entry;
  }
  return Object.fromEntries(Object.entries(cents).map(([code, entry]) => [code, { orders: entry.orders, amount: (entry.cents / 100).toFixed(2) }]));
}

describe('reference tables on real PostgreSQL', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router | undefined;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'rf');
    access = accessFor(cluster.servers);
    await initCluster(access, SLOTS);
    for (let index = 0; index < 3; index++) await addNode(access, { name: `n${index + 1}`, connection: cluster.servers[index]!.connection });
    await createShardedTable(access, {
      name: 'orders', shardKey: ['user_id'],
      definition: 'user_id bigint NOT NULL, id bigint NOT NULL, plan_code text NOT NULL, amount numeric(12,2) NOT NULL, PRIMARY KEY (user_id, id)',
    });
  });
  afterAll(async () => {
    await router?.close();
    await cluster?.stop();
  });

  it('refuses a reference table without a primary key, changing nothing', async () => {
    const refused = await createReferenceTable(access, { name: 'flags', definition: 'name text NOT NULL, enabled boolean NOT NULL' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ReshardError);
    expect((refused as ReshardError).line()).toMatch(/"flags" has no primary key\. Fix: add PRIMARY KEY/);
    expect(await readReferenceTables(access)).toEqual([]);
    const catalog = catalogUrl(cluster.servers[0]!.connection);
    const cli = await runCli(['--catalog', catalog, 'table', 'create', 'flags', '--reference', '--columns', 'name text NOT NULL']);
    expect(cli.code).toBe(2);
    expect(cli.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^reshard: error: the reference table "flags" has no primary key\. Fix: add PRIMARY KEY/)]);
    const withKey = await runCli(['--catalog', catalog, 'table', 'create', 'flags', '--reference', '--key', 'name', '--columns', 'name text PRIMARY KEY']);
    expect(withKey.code).toBe(2);
    expect(withKey.stderr).toMatch(/a reference table has no shard key\. Fix: drop --key/);
    for (const server of cluster.servers.slice(0, 3)) {
      const client = await connectTo(server.connection);
      try {
        expect((await client.query("SELECT to_regclass('flags') AS t")).rows[0].t).toBeNull();
      } finally {
        await client.end();
      }
    }
  });

  it('keeps plans whole on every node: holder writes reach every copy, local joins add up to the global answer, other copies refuse writes', async () => {
    const plans = await createReferenceTable(access, { name: 'plans', definition: 'code text PRIMARY KEY, price numeric(10,2) NOT NULL' });
    expect(plans.holder).toBe('n1');
    router = await Router.connect({ catalog: access.catalog });
    for (const plan of PLANS) await router.reference('plans', 'INSERT INTO plans (code, price) VALUES ($1, $2)', [plan.code, plan.price]);
    await waitForPlansEverywhere(cluster.servers.slice(0, 3), EXPECTED_PLANS);
    const read = await router.reference<{ n: string }>('plans', 'SELECT count(*)::text AS n FROM plans', [], { read: true });
    expect(Number(read.rows[0]!.n)).toBe(PLANS.length);

    for (let first = 1; first <= ORDERS; first += 50) {
      await Promise.all(Array.from({ length: Math.min(50, ORDERS - first + 1) }, (_, offset) => {
        const id = first + offset;
        const { planCode, amount } = orderOf(id);
        return router!.query(id, 'INSERT INTO orders (user_id, id, plan_code, amount) VALUES ($1, $2, $3, $4)', [id, id, planCode, amount]);
      }));
    }
    const local = await localJoinTotals(router);
    expect(local.unmatched).toBe(0);
    expect(local.perPlan).toEqual(globalJoinTotals());

    // A copy that is not the holder refuses a direct write, naming the holder; the apply worker still writes it.
    const n2 = await connectTo(cluster.servers[1]!.connection);
    try {
      const refused = await n2.query("INSERT INTO plans (code, price) VALUES ('rogue', 1)").catch((error: unknown) => error as { code?: string; hint?: string });
      expect(refused).toMatchObject({ code: NOT_HOLDER_SQLSTATE });
      expect((refused as { hint?: string }).hint).toMatch(/node n1/);
      const truncate = await n2.query('TRUNCATE plans').catch((error: unknown) => error as { code?: string });
      expect(truncate).toMatchObject({ code: NOT_HOLDER_SQLSTATE });
    } finally {
      await n2.end();
    }
    await router.reference('plans', "UPDATE plans SET price = price + 1 WHERE code = 'pro'");
    const updated = EXPECTED_PLANS.replace('pro=12.50', 'pro=13.50');
    await waitForPlansEverywhere(cluster.servers.slice(0, 3), updated);
    await router.reference('plans', "UPDATE plans SET price = price - 1 WHERE code = 'pro'");
    await waitForPlansEverywhere(cluster.servers.slice(0, 3), EXPECTED_PLANS);

    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    expect(report.referenceRowsByTable).toEqual({ plans: PLANS.length });
    const doctor = await runDoctor(access, { fix: false });
    expect(doctor.findings.filter((entry) => entry.severity !== 'ok').map((entry) => `${entry.node} ${entry.check}: ${entry.message}`)).toEqual([]);
    expect(doctor.findings.find((entry) => entry.check === 'reference_copy')?.severity).toBe('ok');
    expect(await removeNode(access, 'n1').catch((error: unknown) => (error as ReshardError).line())).toMatch(/"n1" holds the reference table\(s\) plans.*Fix: /);
  });

  it('gives a 4th node every reference row before any slot moves onto it, and the online rebalance completes', async () => {
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    // node add returned: the copy is complete before the rebalance could give n4 a slot.
    expect(await plansOn(cluster.servers[3]!)).toBe(EXPECTED_PLANS);
    expect((await withCatalog(access, readSlotMap)).owners).not.toContain('n4');

    // A copy that stopped following its holder keeps slots off the node.
    const n4 = await connectTo(cluster.servers[3]!.connection);
    const subscription = referenceSubscriptionName('n1', 'n4');
    try {
      await n4.query(`ALTER SUBSCRIPTION ${subscription} DISABLE`);
      const refused = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(ReshardError);
      expect((refused as ReshardError).line()).toMatch(/no slot can move onto n4 yet: plans on n4: subscription .* is disabled/);
      expect((await withCatalog(access, readSlotMap)).owners).not.toContain('n4');
      await n4.query(`ALTER SUBSCRIPTION ${subscription} ENABLE`);
    } finally {
      await n4.end();
    }

    // The online mover's capacity plan counts the reference apply worker as used by others (stock: 4 workers).
    const settings = await (async () => {
      const client = await connectTo(cluster.servers[3]!.connection);
      try {
        return await readReplicationSettings(client, migrationReplicationPrefix(1));
      } finally {
        await client.end();
      }
    })();
    expect(settings.logicalWorkersUsed).toBe(1);
    expect(settings.maxLogicalReplicationWorkers).toBe(4);

    const grown = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(grown.summary?.state).toBe('completed');
    expect(grown.summary?.slotsMoved).toBe(SLOTS / 4);
    expect((await withCatalog(access, readSlotMap)).owners.filter((owner) => owner === 'n4')).toHaveLength(SLOTS / 4);
    await waitForPlansEverywhere(cluster.servers, EXPECTED_PLANS);
    const local = await localJoinTotals(router!);
    expect(local.unmatched).toBe(0);
    expect(local.perPlan).toEqual(globalJoinTotals());
    const report = await verifyCluster(access);
    expect(report.problems).toEqual([]);
    // The migration's replication objects are gone; the reference ones stay, owned.
    expect(await leftoverReplicationObjects(cluster.servers)).toEqual([]);
    const doctor = await runDoctor(access, { fix: false });
    expect(doctor.findings.filter((entry) => entry.severity !== 'ok').map((entry) => `${entry.node} ${entry.check}: ${entry.message}`)).toEqual([]);
  });

  it('drops a drained node\'s subscription (and its slot on the holder) when the rebalance removes it, not before', async () => {
    const subscription = referenceSubscriptionName('n1', 'n4');
    await removeNode(access, 'n4');
    expect(await referenceObjectsOn(cluster.servers[3]!)).toEqual([subscription]);
    const shrunk = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 4, emit: () => {} });
    expect(shrunk.summary?.state).toBe('completed');
    expect(await referenceObjectsOn(cluster.servers[3]!)).toEqual([]);
    expect(await referenceObjectsOn(cluster.servers[0]!)).toEqual(['reshard_ref', 'reshard_ref_n1_n2', 'reshard_ref_n1_n3']);
    expect((await verifyCluster(access)).problems).toEqual([]);
    const doctor = await runDoctor(access, { fix: false });
    expect(doctor.findings.filter((entry) => entry.severity !== 'ok').map((entry) => `${entry.node} ${entry.check}: ${entry.message}`)).toEqual([]);

    // Added again while its old copy is stale: the new subscription starts from an empty copy, no duplicate key.
    await router!.reference('plans', "INSERT INTO plans (code, price) VALUES ('starter', 5)");
    await waitForPlansEverywhere(cluster.servers.slice(0, 3), WITH_STARTER);
    expect(await plansOn(cluster.servers[3]!)).toBe(EXPECTED_PLANS);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    expect(await plansOn(cluster.servers[3]!)).toBe(WITH_STARTER);

    // A lost subscription is reported by doctor, and --fix subscribes the copy again.
    const n2 = await connectTo(cluster.servers[1]!.connection);
    try {
      await n2.query(`DROP SUBSCRIPTION ${referenceSubscriptionName('n1', 'n2')}`);
    } finally {
      await n2.end();
    }
    const broken = await runDoctor(access, { fix: false });
    expect(broken.findings.filter((entry) => entry.severity === 'error').map((entry) => `${entry.node} ${entry.check}: ${entry.message}`))
      .toEqual([expect.stringMatching(/^n2 reference_copy: plans on n2: subscription reshard_ref_n1_n2 is missing/)]);
    const fixed = await runDoctor(access, { fix: true });
    expect(fixed.fixed).toBe(1);
    expect(fixed.errors).toBe(0);
    await router!.reference('plans', "UPDATE plans SET price = 6 WHERE code = 'starter'");
    await waitForPlansEverywhere(cluster.servers, WITH_STARTER.replace('starter=5.00', 'starter=6.00'));
    await router!.reference('plans', "UPDATE plans SET price = 5 WHERE code = 'starter'");
    await waitForPlansEverywhere(cluster.servers, WITH_STARTER);
    expect((await verifyCluster(access)).problems).toEqual([]);

    const listed = await runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), '--json', 'table', 'list']);
    expect(JSON.parse(listed.stdout.trim()).tables).toEqual([
      expect.objectContaining({ table: 'orders', kind: 'sharded' }),
      { table: 'plans', kind: 'reference', holder: 'n1' },
    ]);
  });

  it('moves the holder to another node under writes through the router, no acknowledged write lost, none applied twice', async () => {
    const acknowledged: string[] = [];
    const refused: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let index = 0; writing && index < 10_000; index++) {
        const code = `w${index}`;
        try {
          await router!.reference('plans', 'INSERT INTO plans (code, price) VALUES ($1, 1)', [code]);
          acknowledged.push(code);
        } catch (error) {
          // Refused by a copy that is not the holder: nothing applied.
          expect((error as { code?: string }).code).toBe(NOT_HOLDER_SQLSTATE);
          refused.push(code);
        }
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const moved = await moveReferenceHolder(access, { name: 'plans', holder: 'n2' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    writing = false;
    await writer;
    expect(moved.holder).toBe('n2');
    expect(acknowledged.length).toBeGreaterThan(0);
    const afterMove = acknowledged.filter((code) => Number(code.slice(1)) > Number(acknowledged[0]!.slice(1)));
    expect(afterMove.length).toBeGreaterThan(0);
    const expected = [...PLANS, { code: 'starter', price: '5.00' }, ...acknowledged.map((code) => ({ code, price: '1.00' }))]
      .sort((a, b) => a.code.localeCompare(b.code)).map((plan) => `${plan.code}=${plan.price}`).join(',');
    await waitForPlansEverywhere(cluster.servers, expected);

    const n1 = await connectTo(cluster.servers[0]!.connection);
    try {
      const direct = await n1.query("INSERT INTO plans (code, price) VALUES ('rogue', 1)").catch((error: unknown) => error as { code?: string; hint?: string });
      expect(direct).toMatchObject({ code: NOT_HOLDER_SQLSTATE });
      expect((direct as { hint?: string }).hint).toMatch(/node n2/);
    } finally {
      await n1.end();
    }
    expect((await verifyCluster(access)).problems).toEqual([]);
    // The old holder holds nothing more: its publication and every subscription to it are gone.
    expect(await referenceObjectsOn(cluster.servers[0]!)).toEqual([referenceSubscriptionName('n2', 'n1')]);
    const doctor = await runDoctor(access, { fix: false });
    expect(doctor.findings.filter((entry) => entry.severity !== 'ok').map((entry) => `${entry.node} ${entry.check}: ${entry.message}`)).toEqual([]);
    expect(await removeNode(access, 'n2').catch((error: unknown) => (error as ReshardError).line())).toMatch(/Fix: move the holder first: `reshard table set-holder plans OTHER_NODE`/);
    const unknown = await runCli(['--catalog', catalogUrl(cluster.servers[0]!.connection), 'table', 'set-holder', 'plans', 'n9']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^reshard: error: --holder "n9" is not an active node\. Fix: use one of: n1, n2, n3, n4$/)]);
  });

  it('verify reports a tampered copy and doctor its disabled subscription', async () => {
    const n3 = await connectTo(cluster.servers[2]!.connection);
    const subscription = referenceSubscriptionName('n2', 'n3');
    try {
      await n3.query(`ALTER SUBSCRIPTION ${subscription} DISABLE`);
      // As the apply worker does: replica role skips the write guard.
      await n3.query("BEGIN; SET LOCAL session_replication_role = replica; UPDATE plans SET price = 0 WHERE code = 'team'; COMMIT");
      const report = await verifyCluster(access);
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.stringMatching(new RegExp(`^plans on n3: subscription ${subscription} is disabled`)),
        expect.stringMatching(/^plans on n3: ([0-9]+) rows \(checksum -?[0-9]+\) but the holder n2 has \1 \(checksum -?[0-9]+\)$/),
      ]);
      const doctor = await runDoctor(access, { fix: false });
      expect(doctor.findings.filter((entry) => entry.severity === 'error').map((entry) => `${entry.node} ${entry.check}`)).toEqual(['n3 reference_copy']);
    } finally {
      await n3.end();
    }
  });
});
