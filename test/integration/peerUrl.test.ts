import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigration, finishMigration } from '../../src/catalog/migrationRuns.js';
import { DEMO_TABLES, loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli, type CliResult } from '../support/cli.js';
import { accessFor } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import { SubscriptionRefusingProxy } from '../support/subscriptionRefusingProxy.js';

/*
 * Nodes on other hosts, built on one machine: n3's --url goes through a
 * forwarder that passes the coordinator's connections and refuses the nodes'
 * subscriptions (an address only the coordinator can reach). `node add`
 * refuses it naming the pair, accepts it with a --peer-url the nodes reach,
 * and slots then move onto it and off it online. The rebalance preflight
 * refuses a peer address that stopped working; `node set` changes addresses
 * of the same database only, and the limits.
 */

const SLOTS = 16;
const USERS = 1200;

let cluster: TestServers;
/** In front of n3's server: the coordinator's address of n3. */
let coordinatorPath: SubscriptionRefusingProxy;
/** Also in front of n3's server: a peer address that works until the test breaks it. */
let peerPath: SubscriptionRefusingProxy;

type Json = Record<string, any>;

const serverUrl = (index: number, host = '127.0.0.1'): string => catalogUrl({ ...cluster.servers[index]!.connection, host });
const proxyUrl = (proxy: SubscriptionRefusingProxy): string => `postgres://postgres@127.0.0.1:${proxy.port}/postgres`;

async function cli(...args: string[]): Promise<{ result: CliResult; last: Json }> {
  const result = await runCli(['--json', '--catalog', serverUrl(0), ...args], {}, 180_000);
  const lines = result.stdout.split('\n').filter((line) => line.length > 0);
  return { result, last: lines.length ? JSON.parse(lines[lines.length - 1]!) as Json : {} };
}

async function cliOk(...args: string[]): Promise<Json> {
  const run = await cli(...args);
  expect(run.result.code, `reshard ${args.join(' ')}: ${run.result.stderr}`).toBe(0);
  return run.last;
}

async function nodes(): Promise<Json[]> {
  return (await cliOk('node', 'list')).nodes as Json[];
}

async function rowsOnAllNodes(): Promise<number> {
  let rows = 0;
  for (const server of cluster.servers) {
    const client = await connectTo(server.connection);
    try {
      const result = await client.query<{ rows: string }>('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders) AS rows');
      rows += Number(result.rows[0]!.rows);
    } finally {
      await client.end();
    }
  }
  return rows;
}

beforeAll(async () => {
  cluster = await startTestServers(3, 'peer');
  coordinatorPath = await SubscriptionRefusingProxy.start(cluster.servers[2]!.port);
  peerPath = await SubscriptionRefusingProxy.start(cluster.servers[2]!.port);
  peerPath.refusingSubscriptions = false;
  await cliOk('init', '--slots', String(SLOTS));
  await cliOk('node', 'add', 'n1', '--url', serverUrl(0));
  await cliOk('node', 'add', 'n2', '--url', serverUrl(1));
  for (const table of DEMO_TABLES) {
    await cliOk('table', 'create', table.name, '--key', table.shardKey.join(','), '--columns', table.definition,
      ...('colocateWith' in table ? ['--colocate-with', table.colocateWith] : []));
  }
  expect(await loadDemoRows(accessFor(cluster.servers), USERS)).toBe(2 * USERS);
});

afterAll(async () => {
  await coordinatorPath?.close();
  await peerPath?.close();
  await cluster?.stop();
});

describe('a node reachable by the coordinator but not by its peers', () => {
  it('is refused at node add, naming the pair, with nothing recorded', async () => {
    const refused = await cli('node', 'add', 'n3', '--url', proxyUrl(coordinatorPath));
    expect(refused.result.code).toBe(3);
    expect(refused.result.stderr).toMatch(new RegExp(
      `node "n1" cannot reach node "n3" at postgres@127\\.0\\.0\\.1:${coordinatorPath.port}/postgres for replication \\(.*not reachable from the nodes.*\\)\\. Fix: pass --peer-url`));
    // The coordinator itself got through: the probe ran from n1's server, as a subscription.
    expect(coordinatorPath.refused.length).toBeGreaterThan(0);
    expect(coordinatorPath.refused.every((startup) => startup['replication'] === 'database' && startup['application_name']!.startsWith('reshard_probe_'))).toBe(true);
    expect((await nodes()).map((node) => node.name)).toEqual(['n1', 'n2']);
  });

  it('is accepted with a --peer-url the nodes reach; slots move onto it online, rows intact', async () => {
    const added = await cliOk('node', 'add', 'n3', '--url', proxyUrl(coordinatorPath), '--peer-url', proxyUrl(peerPath));
    expect(added.peer).toBe(`postgres@127.0.0.1:${peerPath.port}/postgres`);
    const listed = await nodes();
    expect(listed.find((node) => node.name === 'n3')).toMatchObject({ connection: `postgres@127.0.0.1:${coordinatorPath.port}/postgres`, peer: `postgres@127.0.0.1:${peerPath.port}/postgres` });

    const grown = await cliOk('rebalance', '--mode', 'online');
    expect(grown.state).toBe('completed');
    expect(grown.slots_moved).toBeGreaterThan(0);
    const slots = Object.fromEntries((await nodes()).map((node) => [node.name, node.slots]));
    expect(slots['n3']).toBeGreaterThanOrEqual(5);
    expect((await cliOk('verify')).rows_total).toBe(2 * USERS);
    expect(await rowsOnAllNodes()).toBe(2 * USERS);
  });

  it('a peer address that stopped working stops the rebalance and resume preflights; node set --peer-url mends it and the drain runs online', async () => {
    peerPath.refusingSubscriptions = true;
    await cliOk('node', 'remove', 'n3');
    const refused = await cli('rebalance', '--mode', 'online');
    expect(refused.result.code).toBe(3);
    expect(refused.result.stderr).toMatch(new RegExp(`node "n[12]" cannot reach node "n3" at postgres@127\\.0\\.0\\.1:${peerPath.port}/postgres for replication .*Fix: .*reshard node set n3 --peer-url`));
    const status = await cli('status');
    expect(JSON.stringify(status.last)).not.toMatch(/"state":"running"/);

    // resume checks the moves it will start the same way (a migration left interrupted, by hand here).
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const owned = await catalog.query<{ slot: number }>("SELECT slot FROM reshard.slot WHERE owner = 'n3' ORDER BY slot LIMIT 1");
      const id = await createMigration(catalog, { mode: 'online', baseEpoch: 1, plan: {}, moves: [{ slot: owned.rows[0]!.slot, source: 'n3', target: 'n1', wave: 0, bytesTotal: 0 }] });
      const resumeRefused = await cli('resume');
      expect(resumeRefused.result.code).toBe(3);
      expect(resumeRefused.result.stderr).toMatch(/node "n1" cannot reach node "n3" at .* for replication/);
      await finishMigration(catalog, id, 'cancelled');
    } finally {
      await catalog.end();
    }

    // node set probes too: an address the nodes cannot reach is refused, the direct one accepted.
    const stillBroken = await cli('node', 'set', 'n3', '--peer-url', proxyUrl(coordinatorPath));
    expect(stillBroken.result.code).toBe(3);
    expect(stillBroken.result.stderr).toMatch(/cannot reach node "n3"/);
    const mended = await cliOk('node', 'set', 'n3', '--peer-url', serverUrl(2));
    expect(mended.changed).toEqual(['peer-url']);

    const drained = await cliOk('rebalance', '--mode', 'online');
    expect(drained.state).toBe('completed');
    expect((await nodes()).map((node) => node.name)).toEqual(['n1', 'n2']);
    expect((await cliOk('verify')).rows_total).toBe(2 * USERS);
    expect(await rowsOnAllNodes()).toBe(2 * USERS);
  });
});

describe('node set', () => {
  it('changes weight, concurrency and capacity', async () => {
    const set = await cliOk('node', 'set', 'n2', '--weight', '2', '--concurrency', '3', '--capacity', '10GB');
    expect(set.changed).toEqual(['weight', 'concurrency', 'capacity']);
    const n2 = (await nodes()).find((node) => node.name === 'n2')!;
    expect(n2).toMatchObject({ weight: 2, concurrency_max: 3 });
    const none = await cli('node', 'set', 'n2');
    expect(none.result.code).toBe(2);
    const badWeight = await cli('node', 'set', 'n2', '--weight', '-1');
    expect(badWeight.result.code).toBe(2);
    const unknown = await cli('node', 'set', 'n9', '--weight', '1');
    expect(unknown.result.code).toBe(4);
  });

  it('is refused while a migration runs (or waits to be resumed), nothing changed', async () => {
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      const id = await createMigration(catalog, { mode: 'online', baseEpoch: 1, plan: {}, moves: [] });
      const refused = await cli('node', 'set', 'n2', '--weight', '5');
      expect(refused.result.code).toBe(5);
      expect(refused.result.stderr).toMatch(new RegExp(`migration ${id} was interrupted and is not finished`));
      await finishMigration(catalog, id, 'cancelled');
    } finally {
      await catalog.end();
    }
    expect((await nodes()).find((node) => node.name === 'n2')!.weight).toBe(2);
  });

  it('takes another address of the same database, and refuses another database', async () => {
    const alias = await cliOk('node', 'set', 'n2', '--url', `host=localhost port=${cluster.servers[1]!.port} dbname=postgres user=postgres application_name=ops`);
    expect(alias.connection).toBe(`postgres@localhost:${cluster.servers[1]!.port}/postgres`);
    expect(alias.params).toBe('application_name=ops');

    // Another database of the same server: same system_identifier, another OID. (Another server of this
    // harness would not do: every test server is a copy of one initdb template, so all share one
    // system_identifier — as clones made from one base backup do.)
    const otherDatabase = await cli('node', 'set', 'n2', '--url', `postgres://postgres@127.0.0.1:${cluster.servers[1]!.port}/template1`);
    expect(otherDatabase.result.code).toBe(5);
    expect(otherDatabase.result.stderr).toMatch(/postgres@127\.0\.0\.1:[0-9]+\/template1 reaches another database than node "n2" \(system [0-9]+, database OID 1; the node is system [0-9]+, database OID 5\)/);
    expect((await nodes()).find((node) => node.name === 'n2')!.connection).toBe(`postgres@localhost:${cluster.servers[1]!.port}/postgres`);

    // The cluster still works through the new address.
    expect((await cliOk('verify')).rows_total).toBe(2 * USERS);
  });
});
