import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCheck } from '../../src/checker/runCheck.js';
import { startTestServers, type TestServers } from '../support/servers.js';

describe('consistency checker: 8 clients through the router while the cluster grows 3 → 4 and shrinks 4 → 3', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'ck');
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('loses no acknowledged write, duplicates none, and leaves no replication object (online)', async () => {
    const result = await runCheck({ clients: 8, slots: 32, counters: 64, mode: 'online', servers: cluster.servers });
    expect(result.report.violations).toEqual([]);
    expect(result.report.ok).toBe(true);
    expect(result.grow?.state).toBe('completed');
    expect(result.grow?.slotsMoved).toBe(8);
    expect(result.shrink?.state).toBe('completed');
    expect(result.shrink?.slotsMoved).toBe(8);
    expect(result.report.insertsAcked).toBeGreaterThan(100);
    expect(result.report.incrementsAcked).toBeGreaterThan(100);
    expect(result.report.deletesAcked).toBeGreaterThan(10);
    expect(result.clientErrors).toBe(0);
  });
});

describe('the checker itself', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'cm');
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('reports a lost insert, a resurrected delete and a wrong counter', async () => {
    const { verifyWorkload } = await import('../../src/checker/verifyWorkload.js');
    const result = await runCheck({ clients: 2, slots: 8, counters: 4, mode: 'offline', servers: cluster.servers });
    expect(result.report.ok).toBe(true);
    const access = { catalog: cluster.servers[0]!.connection, passwords: () => undefined };
    const log = {
      insertedAcked: new Set([42]), insertedUnknown: new Set<number>(), deletedAcked: new Set([42]), deletedUnknown: new Set<number>(),
      incrementsAcked: new Map([[1, 1_000_000]]), incrementsUnknown: new Map<number, number>(), anomalies: [], errors: [], samples: [],
    };
    log.deletedAcked.clear();
    const report = await verifyWorkload(access, log);
    expect(report.ok).toBe(false);
    expect(report.violations.join('\n')).toMatch(/acknowledged insert of item 42 exists 0 times/);
    expect(report.violations.join('\n')).toMatch(/counter 1 is \d+, but 1000000 increments were acknowledged/);
    expect(report.violations.join('\n')).toMatch(/exists but was never inserted/);
  });
});
