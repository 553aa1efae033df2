import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

describe('local test servers', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    cluster = await startTestServers(2);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('runs two independent servers with logical WAL on loopback', async () => {
    const ports = new Set(cluster.servers.map((server) => server.port));
    expect(ports.size).toBe(2);
    for (const server of cluster.servers) {
      const client = await connectTo(server.connection);
      try {
        const walLevel = await client.query<{ wal_level: string }>('SHOW wal_level');
        expect(walLevel.rows[0]?.wal_level).toBe('logical');
        const listen = await client.query<{ listen_addresses: string }>('SHOW listen_addresses');
        expect(listen.rows[0]?.listen_addresses).toBe('127.0.0.1');
      } finally {
        await client.end();
      }
    }
  });

  it('restarts a stopped server on the same port', async () => {
    const server = cluster.servers[0]!;
    await server.stop('immediate');
    await expect(connectTo(server.connection)).rejects.toThrow();
    await server.start();
    const client = await connectTo(server.connection);
    const result = await client.query<{ one: number }>('SELECT 1 AS one');
    expect(result.rows[0]?.one).toBe(1);
    await client.end();
  });
});
