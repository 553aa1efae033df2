import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoundTripMeter } from '../../src/mover/roundTripMeter.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/** The count a freeze journals: sequential round trips over several sessions. */
describe('round trip meter on real PostgreSQL', () => {
  let servers: TestServers | undefined;
  let left: pg.Client;
  let right: pg.Client;

  beforeAll(async () => {
    servers = await startTestServers(2, 'rtm');
    left = await connectTo(servers.servers[0]!.connection);
    right = await connectTo(servers.servers[1]!.connection);
  }, 120_000);

  afterAll(async () => {
    await left?.end();
    await right?.end();
    await servers?.stop();
  });

  it('counts sequential round trips: queries on two sessions at once share one, queries on one session queue', async () => {
    const meter = new RoundTripMeter();
    const a = meter.meter(left);
    const b = meter.meter(right);
    await a.query('SELECT 1');
    await b.query('SELECT 1');
    expect(meter.count).toBe(2);
    await Promise.all([a.query('SELECT pg_sleep(0.02)'), b.query('SELECT 1')]);
    expect(meter.count).toBe(3);
    await Promise.all([a.query('SELECT 1'), a.query('SELECT 1')]);
    expect(meter.count).toBe(5);
    // The proxy is the session: its other methods and fields reach it.
    expect(a.database).toBe(left.database);
    expect(a.port).toBe(left.port);
  });
});
