/**
 * The write pause of a split does not grow with the slot's rows (issue 14):
 * a slot of 200,000 rows is split while 4 clients write to it through a
 * router (increments, inserts, deletes). The rows are copied into the two
 * children and caught up while the writes go on; the freeze holds only the
 * last catch-up, the verification from row sums and the swap. Every
 * acknowledged write is found exactly once, counters exact, and the
 * client-seen pause of the split slot is printed (p50 / p99 / max). The same
 * with `--to` (the high child straight onto a second node, one copy of each
 * row: the copy's figures add up to the slot's rows).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { splitSlot } from '../../src/admin/slotExchange.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { percentile } from '../../src/core/percentile.js';
import { slotModulus, slotOfKeyIn } from '../../src/core/slotMap.js';
import { leafName } from '../../src/node/leafName.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/router.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;
const HOT_SLOT = 3;
const SLOT_ROWS = Number(process.env['SPLIT_PAUSE_ROWS'] ?? 200_000);
const CLIENTS = 4;

interface WriteSample { startMs: number; latencyMs: number; slot: number }

describe.each([{ placed: 'in place', to: false }, { placed: 'with --to (the high child on a second node)', to: true }])('split of a big slot $placed: the write pause does not grow with its rows', ({ to }) => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router | undefined;
  /** The slot's node, and with --to the other one. */
  let owner: TestServers['servers'][number];
  let other: TestServers['servers'][number] | undefined;

  /** Runs `sql` on every node: the rows of all. */
  async function onEveryNode<Row extends Record<string, unknown>>(sql: string, params: unknown[]): Promise<Row[]> {
    const rows: Row[] = [];
    for (const server of cluster.servers) {
      const db = await connectTo(server.connection);
      try {
        rows.push(...(await db.query<Row>(sql, params)).rows);
      } finally {
        await db.end();
      }
    }
    return rows;
  }

  beforeAll(async () => {
    cluster = await startTestServers(to ? 2 : 1, to ? 'spt' : 'spp');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (const server of cluster.servers) await addNode(access, { name: server.name, connection: server.connection });
    await createShardedTable(access, { name: 'pause_items', shardKey: ['id'], definition: 'id bigint NOT NULL, n bigint NOT NULL DEFAULT 0, note text NOT NULL, PRIMARY KEY (id)' });
    const ownerName = (await withCatalog(access, (catalog) => readSlotMap(catalog))).owners[HOT_SLOT]!;
    owner = cluster.servers.find((server) => server.name === ownerName)!;
    other = cluster.servers.find((server) => server.name !== ownerName);
    const node = await connectTo(owner.connection);
    try {
      // Straight into the slot's leaf on its node: the keys of 1..SLOT_ROWS·SLOTS·1.2 that hash to it.
      await node.query(`INSERT INTO ${leafName('pause_items', HOT_SLOT, SLOTS)} (id, note)
        SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, $1::bigint) g
         WHERE satisfies_hash_partition('pause_items'::regclass, ${SLOTS}, ${HOT_SLOT}, g) LIMIT $2`, [Math.round(SLOT_ROWS * SLOTS * 1.2), SLOT_ROWS]);
      await node.query('ANALYZE pause_items');
    } finally {
      await node.end();
    }
  }, 240_000);
  afterAll(async () => {
    await router?.close();
    await cluster?.stop();
  });

  it(`splits a slot of ${SLOT_ROWS} rows under ${CLIENTS} writing clients; writes pause only for the last catch-up and the swap`, async () => {
    const map = await withCatalog(access, (catalog) => readSlotMap(catalog));
    const node = await connectTo(owner.connection);
    let hotKeys: number[];
    try {
      const leaf = leafName('pause_items', HOT_SLOT, SLOTS);
      expect(Number((await node.query(`SELECT count(*) AS n FROM ${leaf}`)).rows[0].n)).toBe(SLOT_ROWS);
      hotKeys = (await node.query<{ id: string }>(`SELECT id::text FROM ${leaf} ORDER BY id LIMIT 3000`)).rows.map((row) => Number(row.id));
    } finally {
      await node.end();
    }
    const incremented = hotKeys.slice(0, 2000);
    const deletable = hotKeys.slice(2000);
    router = await Router.connect({ catalog: access.catalog, name: 'split pause test', poolSizePerNode: CLIENTS });

    const increments = new Map<number, number>();
    const inserted: number[] = [];
    const deleted: number[] = [];
    const errors: string[] = [];
    const samples: WriteSample[] = [];
    let nextInsert = 1_000_000_000;
    let running = true;
    const started = performance.now();
    const client = async (index: number): Promise<void> => {
      for (let op = 0; running; op++) {
        const startMs = performance.now() - started;
        try {
          if (op % 10 === 3) {
            const id = nextInsert++;
            await router!.query(id, 'INSERT INTO pause_items (id, note) VALUES ($1, $2)', [id, `client ${index}`]);
            inserted.push(id);
            samples.push({ startMs, latencyMs: performance.now() - started - startMs, slot: slotOfKeyIn(map, ['bigint'], [id]) });
          } else if (op % 10 === 7 && deletable.length > 0) {
            const id = deletable.pop()!;
            const result = await router!.query(id, 'DELETE FROM pause_items WHERE id = $1', [id]);
            if (result.rowCount !== 1) errors.push(`delete of ${id} matched ${result.rowCount} rows`);
            deleted.push(id);
            samples.push({ startMs, latencyMs: performance.now() - started - startMs, slot: HOT_SLOT });
          } else {
            const id = incremented[Math.floor(Math.random() * incremented.length)]!;
            const result = await router!.query(id, 'UPDATE pause_items SET n = n + 1 WHERE id = $1', [id]);
            if (result.rowCount !== 1) errors.push(`increment of ${id} matched ${result.rowCount} rows`);
            else increments.set(id, (increments.get(id) ?? 0) + 1);
            samples.push({ startMs, latencyMs: performance.now() - started - startMs, slot: HOT_SLOT });
          }
        } catch (error) {
          errors.push(String(error));
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    };
    const clients = Array.from({ length: CLIENTS }, (_, index) => client(index));
    await new Promise((resolve) => setTimeout(resolve, 1000));

    const splitFromMs = performance.now() - started;
    const split = await splitSlot(access, { slot: HOT_SLOT, ...(to ? { to: other!.name } : {}) });
    const splitToMs = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    running = false;
    await Promise.all(clients);

    const during = samples.filter((sample) => sample.slot === HOT_SLOT && sample.startMs + sample.latencyMs >= splitFromMs && sample.startMs <= splitToMs).map((sample) => sample.latencyMs);
    const before = samples.filter((sample) => sample.slot === HOT_SLOT && sample.startMs + sample.latencyMs < splitFromMs).map((sample) => sample.latencyMs);
    const figures = {
      rows: split.rows, ...(split.rowsCopied ? { rows_copied_low: split.rowsCopied.low, rows_copied_high: split.rowsCopied.high } : {}), split_ms: Math.round(splitToMs - splitFromMs), coordinator_pause_ms: split.pauseMs,
      client_pause_ms_p50: Math.round(percentile(during, 0.5)), client_pause_ms_p99: Math.round(percentile(during, 0.99)), client_pause_ms_max: Math.round(Math.max(...during)),
      calls_before_p99_ms: Math.round(percentile(before, 0.99)), hot_calls_during: during.length, writes: samples.length,
    };
    console.log(`split${to ? ' --to' : ''} of a ${SLOT_ROWS}-row slot: ${JSON.stringify(figures)}`);

    expect(errors.slice(0, 5)).toEqual([]);
    expect(split.rows).toBeGreaterThan(SLOT_ROWS - deleted.length);
    expect(slotModulus(await withCatalog(access, (catalog) => readSlotMap(catalog)), HOT_SLOT)).toBe(2 * SLOTS);
    // The freeze held the writes only for what changed after the last catch-up, not for the slot's rows.
    expect(split.caughtUpInFreeze).toBeDefined();
    expect(split.caughtUpInFreeze!).toBeLessThan(SLOT_ROWS / 20);

    if (to) {
      // Each row copied once: the low half on the slot's node, the high half to the other, no second copy.
      const copied = split.rowsCopied!;
      expect(copied.low + copied.high).toBeGreaterThan(SLOT_ROWS - deleted.length - 1);
      expect(copied.low + copied.high).toBeLessThanOrEqual(SLOT_ROWS + inserted.length);
      const after = await withCatalog(access, (catalog) => readSlotMap(catalog));
      expect(after.owners[HOT_SLOT + SLOTS]).toBe(other!.name);
    }

    // Every acknowledged write exactly once, counters exact (on whichever node holds the row).
    const counters = await onEveryNode<{ id: string; n: string }>('SELECT id::text, n::text FROM pause_items WHERE id = ANY($1::bigint[])', [incremented]);
    const wrong = counters.filter((row) => Number(row.n) !== (increments.get(Number(row.id)) ?? 0));
    expect(wrong.slice(0, 5)).toEqual([]);
    expect(counters.length).toBe(incremented.length);
    const count = async (sql: string, params: unknown[]): Promise<number> => (await onEveryNode<{ n: string }>(sql, params)).reduce((sum, row) => sum + Number(row.n), 0);
    expect(await count('SELECT count(*) AS n FROM pause_items WHERE id = ANY($1::bigint[])', [inserted])).toBe(inserted.length);
    expect(await count('SELECT count(*) AS n FROM pause_items WHERE id = ANY($1::bigint[])', [deleted])).toBe(0);
    // The split slot's two children hold its rows: the loaded ones, plus the inserted, less the deleted.
    expect(await count(`SELECT count(*) AS n FROM pause_items WHERE satisfies_hash_partition('pause_items'::regclass, ${SLOTS}, ${HOT_SLOT}, id)`, []))
      .toBe(SLOT_ROWS + inserted.filter((id) => slotOfKeyIn(map, ['bigint'], [id]) === HOT_SLOT).length - deleted.length);
    expect((await verifyCluster(access)).problems).toEqual([]);
  }, 300_000);
});
