import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { freezeSlotsInCatalog } from '../../src/catalog/slotFreeze.js';
import { setSlotState } from '../../src/catalog/slotMap.js';
import { routersBehind } from '../../src/catalog/routers.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { ReshardError } from '../../src/core/errors.js';
import { slotOf } from '../../src/core/hash.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;

describe('router', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    // Servers 1–3 are nodes; server 4 holds only the catalog, so it can be stopped alone.
    cluster = await startTestServers(4, 'rt');
    access = { catalog: cluster.servers[3]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'accounts', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, balance bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses bad options and a catalog without the reshard schema with one clear error each', async () => {
    const lease = await Router.connect({ catalog: access.catalog, leaseMs: 0 }).catch((caught: unknown) => caught);
    expect(lease).toBeInstanceOf(ReshardError);
    expect((lease as ReshardError).line()).toBe('leaseMs must be a positive number of milliseconds, got 0. Fix: pass e.g. leaseMs: 5000');
    const hold = await Router.connect({ catalog: access.catalog, holdTimeoutMs: -1 }).catch((caught: unknown) => caught);
    expect((hold as ReshardError).code).toBe('bad_input');
    // n1 is a node, not the catalog: no reshard schema there.
    const wrong = await Router.connect({ catalog: cluster.servers[0]!.connection }).catch((caught: unknown) => caught);
    expect(wrong).toBeInstanceOf(ReshardError);
    expect((wrong as ReshardError).line()).toMatch(/^the catalog database has no reshard schema\. Fix: run `reshard init`/);
    // The failed connect left no session behind on that server.
    const probe = await connectTo(cluster.servers[0]!.connection);
    const sessions = await probe.query<{ count: string }>("SELECT count(*)::text FROM pg_stat_activity WHERE application_name LIKE 'reshard router%'");
    await probe.end();
    expect(sessions.rows[0]!.count).toBe('0');
  });

  it('routes by key, runs transactions and reaches every node', async () => {
    const router = await Router.connect({ catalog: access.catalog, leaseMs: 2_000 });
    try {
      for (let id = 1; id <= 200; id++) await router.query(id, 'INSERT INTO accounts (id, balance) VALUES ($1, 0)', [id]);
      await router.transaction(7, async (client) => {
        await client.query('UPDATE accounts SET balance = balance + 5 WHERE id = $1', [7]);
      });
      const seven = await router.query<{ balance: string }>(7, 'SELECT balance FROM accounts WHERE id = $1', [7]);
      expect(seven.rows[0]?.balance).toBe('5');
      expect(router.slotOf(7)).toBe(slotOf('bigint', 7, SLOTS));
      const counts = await router.eachNode(async (client) => Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM accounts')).rows[0]!.n));
      expect([...counts.keys()]).toEqual(['n1', 'n2']);
      expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(200);
      expect([...counts.values()].every((count) => count > 0)).toBe(true);
    } finally {
      await router.close();
    }
  });

  it('holds calls on a frozen slot, acknowledges the freeze, and releases them to the new owner', async () => {
    const router = await Router.connect({ catalog: access.catalog, leaseMs: 2_000 });
    const catalog = await connectTo(access.catalog);
    try {
      const key = 11;
      const slot = router.slotOf(key);
      const epoch = await setSlotState(catalog, slot, 'frozen');
      // The router acknowledges the freeze epoch promptly (LISTEN/NOTIFY).
      const deadline = Date.now() + 2_000;
      while ((await routersBehind(catalog, epoch)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(await routersBehind(catalog, epoch)).toEqual([]);
      let settled = false;
      const held = router.query(key, 'UPDATE accounts SET balance = balance + 1 WHERE id = $1', [key]).then((result) => {
        settled = true;
        return result;
      });
      // Another slot is served while this one is frozen.
      const other = [...Array(200).keys()].map((i) => i + 1).find((id) => router.slotOf(id) !== slot)!;
      await router.query(other, 'SELECT 1 FROM accounts WHERE id = $1', [other]);
      await new Promise((r) => setTimeout(r, 150));
      expect(settled).toBe(false);
      await setSlotState(catalog, slot, 'active');
      const result = await held;
      expect(result.rowCount).toBe(1);
    } finally {
      await catalog.end();
      await router.close();
    }
  });

  it('releases a switch\'s held calls as soon as it reads the map, while its report of the freeze to a busy node is still on its way', async () => {
    // One connection per node: a long call on n1 keeps the router's report of the freeze to n1 waiting for it
    // (up to its 250 ms bound); the held call is on n2, whose connection is free.
    const router = await Router.connect({ catalog: access.catalog, leaseMs: 2_000, poolSizePerNode: 1 });
    const catalog = await connectTo(access.catalog);
    try {
      const ids = [...Array(400).keys()].map((i) => i + 1);
      const ownerOf = (id: number): string | undefined => router.routeOf(router.slotOf(id)).owner;
      const [onN1, busyOnN1] = ids.filter((id) => ownerOf(id) === 'n1').filter((id, index, all) => all.findIndex((other) => router.slotOf(other) === router.slotOf(id)) === index);
      const onN2 = ids.find((id) => ownerOf(id) === 'n2')!;
      expect(onN1 !== undefined && busyOnN1 !== undefined && onN2 !== undefined).toBe(true);
      for (const id of [onN1!, busyOnN1!, onN2]) await router.query(id, 'INSERT INTO accounts (id, balance) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING', [id]);
      const busy = router.query(busyOnN1!, 'SELECT pg_sleep(1.2)');
      await new Promise((r) => setTimeout(r, 50));
      const [slotN1, slotN2] = [router.slotOf(onN1!), router.slotOf(onN2)];
      // Both at one epoch: the router's acknowledgement of it first reports the freeze to n1 (waiting) and n2.
      await freezeSlotsInCatalog(catalog, [slotN1, slotN2]);
      const deadline = Date.now() + 2_000;
      while (!router.routeOf(slotN2).frozen && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      expect(router.routeOf(slotN2).frozen).toBe(true);
      let doneAt = 0;
      const held = router.query(onN2, 'UPDATE accounts SET balance = balance + 1 WHERE id = $1', [onN2]).then((result) => {
        doneAt = performance.now();
        return result;
      });
      await new Promise((r) => setTimeout(r, 20));
      const unfrozenAt = performance.now();
      await setSlotState(catalog, slotN2, 'active');
      expect((await held).rowCount).toBe(1);
      // Not after the report's bound: the map after the switch does not wait for the freeze's acknowledgement.
      expect(doneAt - unfrozenAt).toBeLessThan(150);
      await setSlotState(catalog, slotN1, 'active');
      await busy;
      // The balances as they were, for the sum the rebalance test below checks.
      await router.query(onN2, 'UPDATE accounts SET balance = balance - 1 WHERE id = $1', [onN2]);
    } finally {
      await catalog.end();
      await router.close();
    }
  });

  it('acknowledges a freeze at once, even with a slow call in flight on the slot (the node\'s route lock drains it)', async () => {
    const router = await Router.connect({ catalog: access.catalog, leaseMs: 1_000 });
    const catalog = await connectTo(access.catalog);
    try {
      const key = 12;
      const slot = router.slotOf(key);
      const slow = router.query(key, 'SELECT pg_sleep(1.5) FROM accounts WHERE id = $1', [key]);
      await new Promise((r) => setTimeout(r, 100));
      const epoch = await setSlotState(catalog, slot, 'frozen');
      const deadline = Date.now() + 1_000;
      while ((await routersBehind(catalog, epoch)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(await routersBehind(catalog, epoch)).toEqual([]);
      const other = [...Array(200).keys()].map((i) => i + 1).find((id) => router.slotOf(id) !== slot)!;
      expect((await router.query(other, 'SELECT 1 AS one FROM accounts WHERE id = $1', [other])).rows).toEqual([{ one: 1 }]);
      expect((await slow).rowCount).toBe(1);
      await setSlotState(catalog, slot, 'active');
    } finally {
      await catalog.end();
      await router.close();
    }
  });

  it('serves through a 60 s catalog outage with no error, and follows the map again when the catalog returns', async () => {
    const router = await Router.connect({ catalog: access.catalog, leaseMs: 1_000 });
    try {
      let running = true;
      let calls = 0;
      const failures: string[] = [];
      const load = (async () => {
        while (running) {
          const id = 1 + (calls % 200);
          calls++;
          try {
            const result = await router.query<{ balance: string }>(id, 'SELECT balance FROM accounts WHERE id = $1', [id]);
            if (result.rowCount !== 1) failures.push(`read of ${id} found ${result.rowCount} rows`);
          } catch (error) {
            failures.push((error as Error).message);
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await cluster.servers[3]!.stop('immediate');
      const outageStartedAt = Date.now();
      const callsBefore = calls;
      await new Promise((r) => setTimeout(r, 60_000));
      const callsDuringOutage = calls - callsBefore;
      await cluster.servers[3]!.start();
      // The router reconnects by itself and sees the next map change.
      const catalog = await connectTo(access.catalog);
      try {
        const slot = router.slotOf(5);
        const epoch = await setSlotState(catalog, slot, 'frozen');
        const deadline = Date.now() + 10_000;
        while (router.epoch < epoch && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(router.epoch).toBe(epoch);
        expect(router.routeOf(slot).frozen).toBe(true);
        await setSlotState(catalog, slot, 'active');
      } finally {
        await catalog.end();
      }
      running = false;
      await load;
      expect(Date.now() - outageStartedAt).toBeGreaterThanOrEqual(60_000);
      expect(callsDuringOutage).toBeGreaterThan(1_000);
      expect(failures).toEqual([]);
    } finally {
      await router.close();
    }
  }, 120_000);

  it('follows an online rebalance: every call after the switch goes to the new owner', async () => {
    const router = await Router.connect({ catalog: access.catalog, leaseMs: 2_000 });
    try {
      await addNode(access, { name: 'n3', connection: cluster.servers[2]!.connection });
      let running = true;
      let errors = 0;
      let calls = 0;
      const load = (async () => {
        while (running) {
          const id = 1 + (calls % 200);
          calls++;
          try {
            const result = await router.query(id, 'UPDATE accounts SET balance = balance + 1 WHERE id = $1', [id]);
            if (result.rowCount !== 1) errors++;
          } catch {
            errors++;
          }
        }
      })();
      const result = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 2, emit: () => {} });
      running = false;
      await load;
      expect(result.summary?.state).toBe('completed');
      expect(result.summary?.slotsMoved).toBeGreaterThan(0);
      expect(calls).toBeGreaterThan(100);
      expect(errors).toBe(0);
      const total = await router.eachNode(async (client) => Number((await client.query<{ s: string }>('SELECT coalesce(sum(balance), 0) AS s FROM accounts')).rows[0]!.s));
      // Every acknowledged increment (plus the 5 and 1 from the tests above) is there exactly once.
      expect([...total.values()].reduce((a, b) => a + b, 0)).toBe(calls + 6);
    } finally {
      await router.close();
    }
  });

});
