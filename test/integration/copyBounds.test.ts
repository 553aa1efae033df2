import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReshardError } from '../../src/core/errors.js';
import { connectTo as connectNode } from '../../src/plumbing/connectTo.js';
import { copyRelation } from '../../src/node/copySlot.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import { TcpProxy } from '../support/tcpProxy.js';

/**
 * A COPY between two sessions must end within its bounds whatever the
 * network does: the fault matrix found a copy that waited forever for a
 * stalled target's confirmation after its last byte had been sent.
 */
describe('copy bounds', () => {
  let servers: TestServers | undefined;
  let proxy: TcpProxy | undefined;

  beforeAll(async () => {
    servers = await startTestServers(1, 'copy');
    const admin = await connectTo(servers.servers[0]!.connection);
    try {
      await admin.query('CREATE TABLE copy_from (id int PRIMARY KEY, note text)');
      await admin.query(`INSERT INTO copy_from SELECT g, repeat('x', 50) FROM generate_series(1, 500) g`);
      await admin.query('CREATE DATABASE copy_target');
    } finally {
      await admin.end();
    }
    const target = await connectTo({ ...servers.servers[0]!.connection, database: 'copy_target' });
    try {
      await target.query('CREATE TABLE copy_from (id int PRIMARY KEY, note text)');
    } finally {
      await target.end();
    }
    proxy = await TcpProxy.start(servers.servers[0]!.port);
  }, 120_000);

  afterAll(async () => {
    await proxy?.close();
    await servers?.stop();
  });

  it('copies every row when the network passes', async () => {
    const connection = servers!.servers[0]!.connection;
    const source = await connectNode({ role: 'source', connection });
    const target = await connectNode({ role: 'target', connection: { ...connection, database: 'copy_target', port: proxy!.port } });
    try {
      await target.query('TRUNCATE copy_from');
      let reported = 0;
      const copied = await copyRelation(source, target, 'public.copy_from', (bytes) => { reported = bytes; }, undefined, 2_000);
      expect(copied.rows).toBe(500);
      expect(copied.bytes).toBe(reported);
      expect(copied.bytes).toBeGreaterThan(500 * 50);
      expect((await target.query<{ rows: string }>('SELECT count(*) AS rows FROM copy_from')).rows[0]!.rows).toBe('500');
    } finally {
      await source.end();
      await target.end();
    }
  });

  it('a connection cut under a session gives an error line that names the session', async () => {
    const connection = servers!.servers[0]!.connection;
    const target = await connectNode({ role: 'node "far"', connection: { ...connection, database: 'copy_target', port: proxy!.port } });
    try {
      proxy!.cut();
      const failure = await target.query('SELECT 1').then(() => undefined, (error: unknown) => error);
      expect(failure).toBeInstanceOf(ReshardError);
      expect((failure as ReshardError).code).toBe('unreachable');
      expect((failure as ReshardError).line()).toMatch(/^lost the connection to node "far" \(.+\)\. Fix: check that the node runs/);
    } finally {
      proxy!.heal();
      await target.end().catch(() => {});
    }
  });

  it('fails within its bound, and abandons the target session, when the target stops answering', async () => {
    const connection = servers!.servers[0]!.connection;
    const source = await connectNode({ role: 'source', connection });
    const target = await connectNode({ role: 'target', connection: { ...connection, database: 'copy_target', port: proxy!.port } });
    proxy!.stall();
    const started = performance.now();
    try {
      // All 30 kB fit in the socket buffers: the source side finishes, only the target's confirmation is missing.
      const failure = await copyRelation(source, target, 'public.copy_from', () => {}, undefined, 700).then(() => undefined, (error: unknown) => error);
      const elapsed = performance.now() - started;
      expect(failure).toBeInstanceOf(ReshardError);
      expect((failure as ReshardError).message).toMatch(/did not confirm the copy of public\.copy_from within 700 ms|received no data for 700 ms/);
      expect(elapsed).toBeLessThan(5_000);
      // The abandoned session fails at once instead of queueing behind the lost COPY.
      await expect(target.query('SELECT 1')).rejects.toThrow();
      // The source session is still usable.
      expect((await source.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1);
    } finally {
      proxy!.heal();
      await source.end();
      await target.end().catch(() => {});
    }
  });
});
