import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { readOtherSlotsLatency, recordSlotLoad } from '../../src/catalog/slotLoad.js';
import { CopyThrottle } from '../../src/coordinator/copyThrottle.js';
import { guardLatency, LATENCY_GUARD_DEFAULT } from '../../src/coordinator/latencyGuard.js';
import { interpolatedPercentileMs, latencyBucket, sparseHistogram, LATENCY_BUCKETS } from '../../src/core/latencyHistogram.js';
import { percentile } from '../../src/core/percentile.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import type { MigrationEvent } from '../../src/plumbing/migrationEvents.js';
import { Router } from '../../src/router/index.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

function histogramOf(latenciesMs: number[]): { buckets: number[]; counts: number[] } {
  const counts = new Array<number>(LATENCY_BUCKETS).fill(0);
  for (const ms of latenciesMs) counts[latencyBucket(ms)]!++;
  return sparseHistogram(counts);
}

describe('latency guard against routers\' reports', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    cluster = await startTestServers(1, 'lg');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, 16);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('adds up the other slots\' histograms over routers and periods: the p99 of their calls, not a mix of per-slot percentiles', async () => {
    const catalog = await connectTo(cluster.servers[0]!.connection);
    try {
      await catalog.query('DELETE FROM reshard.slot_load');
      const periodStart = new Date();
      const slow = Array.from({ length: 3 }, () => 40);
      // Slot 0, router A: 97 fast calls and 3 slow ones (its own p99: 40 ms); slot 1, router B: 100 fast calls.
      await recordSlotLoad(catalog, { routerId: '00000000-0000-0000-0000-00000000000a', periodStart, periodMs: 1_000, retentionMs: 3_600_000, samples: [
        { slot: 0, calls: 100, rowsWritten: 0, p50Ms: 1, p99Ms: 40, latency: histogramOf([...Array.from({ length: 97 }, () => 1), ...slow]) },
        // The moving slot, left out: 100 calls of 500 ms.
        { slot: 5, calls: 100, rowsWritten: 0, p50Ms: 500, p99Ms: 500, latency: histogramOf(Array.from({ length: 100 }, () => 500)) },
      ] });
      await recordSlotLoad(catalog, { routerId: '00000000-0000-0000-0000-00000000000b', periodStart, periodMs: 2_000, retentionMs: 3_600_000, samples: [
        { slot: 1, calls: 100, rowsWritten: 0, p50Ms: 1, p99Ms: 1, latency: histogramOf(Array.from({ length: 100 }, () => 1)) },
      ] });
      const merged = await readOtherSlotsLatency(catalog, { windowMs: 60_000, excludedSlots: [5] });
      expect(merged?.calls).toBe(200);
      expect(merged?.reportPeriodMsMax).toBe(2_000);
      expect(merged?.counts[latencyBucket(40)]).toBe(3);
      expect(merged?.counts[latencyBucket(500)]).toBe(0);
      // 3 slow calls of 200: the 198th is slow, so the p99 is 40 ms (within its bucket) — the mean of the slots' p99s weighted by calls would be 20.5 ms.
      const p99 = interpolatedPercentileMs(merged!.counts, 0.99)!;
      expect(p99).toBeGreaterThan(40 / 2 ** 0.25);
      expect(p99).toBeLessThanOrEqual(40 * 2 ** 0.25);
      // A router older than the histogram: its calls count at its own p99.
      await catalog.query(`INSERT INTO reshard.slot_load (router_id, slot, period_start, period_ms, calls, rows_written, p50_ms, p99_ms)
                           VALUES ('00000000-0000-0000-0000-00000000000c', 2, now(), 1000, 50, 0, 3, 7)`);
      const mixed = await readOtherSlotsLatency(catalog, { windowMs: 60_000, excludedSlots: [5] });
      expect(mixed?.calls).toBe(250);
      expect(mixed?.counts[latencyBucket(7)]).toBe(50);
      expect(await readOtherSlotsLatency(catalog, { windowMs: 60_000, excludedSlots: [0, 1, 2, 5] })).toBeUndefined();
    } finally {
      await catalog.end();
    }
  });

  it('holds the other slots\' p99 (as the clients measure it) within the bound against a load that slows with the copy rate, and copies go on', async () => {
    const catalog = await connectTo(cluster.servers[0]!.connection);
    await catalog.query('DELETE FROM reshard.slot_load');
    await catalog.end();
    const router = await Router.connect({ catalog: access.catalog, keyTypes: ['bigint'], loadReportMs: 200 });
    const throttle = new CopyThrottle({ holdMsMax: 60_000 });
    // What copies cost the application here: per MB/s copied over the last half second, 0.4 × the baseline p99 (set once
    // it is measured; 4 ms on a quiet machine), on top of 8 ms. Relative to the baseline, so that 2 MB/s is well over
    // the bound however noisy the machine is (a fixed 4 ms per MB/s was only 1.21× a 22.6-ms baseline once in CI).
    let extraMsPerMBps = 4;
    const admitted: { atMs: number; bytes: number }[] = [];
    const copyMBps = (): number => {
      const nowMs = performance.now();
      while (admitted.length > 0 && admitted[0]!.atMs < nowMs - 500) admitted.shift();
      return admitted.reduce((sum, entry) => sum + entry.bytes, 0) / 0.5 / 1e6;
    };
    const calls: { atMs: number; ms: number; extraMs: number }[] = [];
    let running = true;
    let copying = false;
    const clients = Array.from({ length: 4 }, async () => {
      while (running) {
        const key = 1 + Math.floor(Math.random() * 10_000);
        const startedMs = performance.now();
        const extraMs = extraMsPerMBps * copyMBps();
        await router.query(key, 'SELECT pg_sleep($1::float8 / 1000)', [8 + extraMs]);
        calls.push({ atMs: startedMs, ms: performance.now() - startedMs, extraMs });
      }
    });
    const copier = (async () => {
      while (running) {
        if (!copying) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        await throttle.admit(32 * 1024);
        admitted.push({ atMs: performance.now(), bytes: 32 * 1024 });
      }
    })();
    const events: MigrationEvent[] = [];
    let stopGuard: (() => void) | undefined;
    try {
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const baselineMs = percentile(calls.map((call) => call.ms), 0.99);
      extraMsPerMBps = Math.max(4, 0.4 * baselineMs);
      stopGuard = guardLatency({
        migrationId: 0, access, throttle, movingSlots: [], operatorCapBytesPerSec: undefined,
        // n1 is reported on by the router: not probed.
        probeNodes: [{ name: 'n1', connection: cluster.servers[0]!.connection }],
        limits: { ...LATENCY_GUARD_DEFAULT, impactMax: 1.2, baselineWindowMs: 3_000, bytesPerSecFloor: 32 * 1024, pauseMsMax: 5_000 },
        emit: (event) => events.push(event),
      });
      copying = true;
      const guardedFromMs = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const settledFromMs = performance.now();
      const bytesAtSettled = throttle.admittedBytes;
      await new Promise((resolve) => setTimeout(resolve, 8_000));
      const settled = calls.filter((call) => call.atMs >= settledFromMs);
      const reasons = events.map((event) => (event.type === 'throttle' ? event.reason : '')).join('\n');
      // It started at 2 MB/s (+0.8 × the baseline, well over the bound): it paused.
      expect(events[0]?.type === 'throttle' && events[0].reason).toMatch(/baseline other slots' p99/);
      expect(reasons).not.toMatch(/probe/);
      expect(events.some((event) => event.type === 'throttle' && event.state === 'held'), reasons).toBe(true);
      // Copies go on (a pause lasts 5 s at most here), …
      expect(throttle.admittedBytes, reasons).toBeGreaterThan(bytesAtSettled);
      // … at a rate whose cost stays within the bound: the latency the copies added to the calls, on average, is within
      // 20 % of the baseline p99, with half again for noise as in the probe test below: the guard sees that cost only
      // through p99s of a few hundred calls from histograms of 19 % buckets, on a shared machine where a 2-s p99 jumps by
      // more than the bound with nothing changed (two loaded runs added 22 % and 24 %). Unguarded, this copier adds seconds.
      // (The calls' own p99 is this machine's noise plus that; the test asserts what the guard controls.)
      const extraMeanMs = settled.reduce((sum, call) => sum + call.extraMs, 0) / settled.length;
      expect(extraMeanMs, `${reasons}\nbaseline ${baselineMs} ms`).toBeLessThanOrEqual(1.5 * 0.2 * baselineMs);
      // Without the guard (uncapped), the copier here moves hundreds of MB/s: seconds per call.
      expect(calls.filter((call) => call.atMs >= guardedFromMs).length).toBeGreaterThan(1_000);
    } finally {
      await stopGuard?.();
      running = false;
      await Promise.all([...clients, copier]);
      await router.close();
    }
  });

  it('probes a node no router reports on, against a baseline taken while copies wait, and holds the probe latency within the bound', async () => {
    const catalog = await connectTo(cluster.servers[0]!.connection);
    await catalog.query('DELETE FROM reshard.slot_load');
    await catalog.end();
    const throttle = new CopyThrottle({ holdMsMax: 60_000 });
    const admitted: { atMs: number; bytes: number }[] = [];
    const copyMBps = (): number => {
      const nowMs = performance.now();
      while (admitted.length > 0 && admitted[0]!.atMs < nowMs - 500) admitted.shift();
      return admitted.reduce((sum, entry) => sum + entry.bytes, 0) / 0.5 / 1e6;
    };
    // What copies cost on this node, as its clients see it: its replies come 4 ms later per MB/s copied.
    const proxy = await startDelayingProxy(cluster.servers[0]!.connection.port, () => 4 * copyMBps());
    const events: MigrationEvent[] = [];
    const stopGuard = guardLatency({
      migrationId: 0, access, throttle, movingSlots: [], operatorCapBytesPerSec: undefined,
      probeNodes: [{ name: 'n1', connection: { ...cluster.servers[0]!.connection, port: proxy.port } }],
      limits: { ...LATENCY_GUARD_DEFAULT, impactMax: 1.2, bytesPerSecFloor: 32 * 1024, pauseMsMax: 3_000 },
      emit: (event) => events.push(event),
    });
    // Copies begin with the migration, once the guard is on.
    let running = true;
    const copier = (async () => {
      while (running) {
        await throttle.admit(32 * 1024);
        admitted.push({ atMs: performance.now(), bytes: 32 * 1024 });
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      // The baseline is being measured: copies wait for it.
      expect(throttle.pausedFor).toMatch(/probing n1 for a baseline/);
      expect(throttle.admittedBytes).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 11_000));
      const bytesAtSettled = throttle.admittedBytes;
      // A client of the node's own, through the same proxy: what the application would feel now.
      const client = await connectTo({ ...cluster.servers[0]!.connection, port: proxy.port });
      const felt: number[] = [];
      try {
        const untilMs = performance.now() + 8_000;
        while (performance.now() < untilMs) {
          const startedMs = performance.now();
          await client.query('SELECT 1');
          felt.push(performance.now() - startedMs);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } finally {
        await client.end();
      }
      const reasons = events.map((event) => (event.type === 'throttle' ? event.reason : '')).join('\n');
      expect(reasons).toMatch(/baseline node n1's probe p90 [0-9.]+ ms over [0-9]+ probes/);
      expect(reasons).toMatch(/node n1's probe p90 [0-9.]+ ms = [0-9.]+× baseline .*: copies and cutovers paused/);
      expect(throttle.admittedBytes, reasons).toBeGreaterThan(bytesAtSettled);
      // The bound: the baseline p90 × 1.2, at least the baseline + 1 ms (1.2× of a sub-millisecond probe is less). What
      // the client felt stays within it, with half again for this machine's noise and the guard's 2-s reaction time;
      // without the guard, copies here go hundreds of MB/s: a second per reply.
      const baselineMs = Number(/baseline node n1's probe p90 ([0-9.]+) ms/.exec(reasons)![1]);
      const limitMs = Math.max(1.2 * baselineMs, baselineMs + 1);
      expect(percentile(felt, 0.9), `${reasons}\nlimit ${limitMs} ms`).toBeLessThanOrEqual(1.5 * limitMs);
    } finally {
      await stopGuard();
      running = false;
      await copier;
      await proxy.close();
    }
  });
});

/**
 * A TCP proxy in front of a server that delays every reply chunk by `delayMs()` (in order):
 * a node made slower by copies, as its clients see it.
 */
async function startDelayingProxy(targetPort: number, delayMs: () => number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let nextAtMs = 0;
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      const nowMs = performance.now();
      nextAtMs = Math.max(nextAtMs, nowMs + delayMs());
      setTimeout(() => client.write(chunk), nextAtMs - nowMs);
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
