import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { listNodes } from '../../src/catalog/nodes.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import { withCatalog } from '../../src/plumbing/clusterAccess.js';
import { connectNode } from '../../src/plumbing/connectNode.js';
import { createDemoCluster } from '../support/cluster.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 32;
const USERS = 3_000;

describe('reshard load: rows in COPY format, each to its slot\'s owner', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    cluster = await startTestServers(3);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('loads text and CSV input onto the owners, all or nothing', async () => {
    const access = await createDemoCluster(cluster.servers, 3, SLOTS);
    const env = { RESHARD_CATALOG: catalogUrl(cluster.servers[0]!.connection) };
    const usersFile = join(cluster.baseDir, 'users.tsv');
    // Text format with an escaped tab inside a value and a NULL-free key.
    writeFileSync(usersFile, Array.from({ length: USERS }, (_, index) => `${index + 1}\tuser\\t${index + 1}\tp\t2026-01-01 00:00:00+00`).join('\n') + '\n');
    const users = await runCli(['load', 'users', usersFile, '--json'], env);
    expect(users.stderr).toBe('');
    expect(users.code).toBe(0);
    const result = JSON.parse(users.stdout.trim().split('\n').pop()!) as { rows: number; rows_by_node: Record<string, number> };
    expect(result.rows).toBe(USERS);

    // Every row is on the owner of its slot, and the per-node counts say so.
    const { owners, nodes } = await withCatalog(access, async (catalog) => ({ owners: (await readSlotMap(catalog)).owners, nodes: await listNodes(catalog) }));
    const expectedByNode: Record<string, number> = {};
    for (let id = 1; id <= USERS; id++) {
      const owner = owners[slotOf('bigint', id, SLOTS)]!;
      expectedByNode[owner] = (expectedByNode[owner] ?? 0) + 1;
    }
    expect(result.rows_by_node).toEqual(expectedByNode);
    for (const node of nodes) {
      const client = await connectNode(node, access.passwords);
      try {
        const counted = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
        expect(counted.rows[0]!.n).toBe(expectedByNode[node.name] ?? 0);
        const name = await client.query<{ name: string }>('SELECT name FROM users ORDER BY id LIMIT 1');
        if (name.rows[0]) expect(name.rows[0].name).toMatch(/^user\t\d+$/);
      } finally {
        await client.end();
      }
    }

    // CSV with a header naming the columns in another order; a quoted comma and newline in a value.
    const ordersFile = join(cluster.baseDir, 'orders.csv');
    writeFileSync(ordersFile, 'id,amount,user_id\n' + Array.from({ length: USERS }, (_, index) => `1,"${index}.50",${index + 1}`).join('\n') + '\n');
    const orders = await runCli(['load', 'orders', ordersFile, '--header'], env);
    expect(orders.stderr).toBe('');
    expect(orders.code).toBe(0);
    expect(orders.stdout).toContain(`Loaded ${USERS} rows into orders`);
    const verified = await verifyCluster(access);
    expect(verified.problems).toEqual([]);
    expect(verified.rowsTotal).toBe(USERS * 2);

    // One bad row (a duplicate key, refused by one owner) and nothing of the file is kept anywhere.
    const badFile = join(cluster.baseDir, 'bad.tsv');
    writeFileSync(badFile, Array.from({ length: 500 }, (_, index) => `${USERS + index + 1}\tx\tp\t2026-01-01 00:00:00+00`).join('\n') + '\n1\tdup\tp\t2026-01-01 00:00:00+00\n');
    const bad = await runCli(['load', 'users', badFile], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/refused the rows.*nothing was loaded/);
    expect((await verifyCluster(access)).rowsTotal).toBe(USERS * 2);

    // A key missing from the input's columns is refused before anything is sent.
    const noKey = await runCli(['load', 'users', usersFile, '--columns', 'name,payload'], env);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/do not include the shard key column id/);
  });
});
