import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canLogRunningTransactions, emitMarker, logRunningTransactions } from '../../src/node/adoptSource.js';
import { LogicalChangeStream, type ChangeLine } from '../../src/node/logicalChangeStream.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

describe('an adoption source logs its running transactions on demand (PostgreSQL 16+)', () => {
  let cluster: TestServers;
  beforeAll(async () => {
    // Stock settings (only wal_level = logical), as a stranger's source server runs.
    cluster = await startTestServers(1, 'rx', undefined, 'stock');
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('lets the change slot\'s restart point follow the stream where the server can, and says no where it cannot', async () => {
    const db = await connectTo(cluster.servers[0]!.connection);
    try {
      // As reshard's own sessions: a logical slot decodes only flushed WAL (the test servers commit asynchronously).
      await db.query('SET synchronous_commit = on');
      const version = Number((await db.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v);
      const can = await canLogRunningTransactions(db);
      expect(can).toBe(version >= 160000);
      await db.query('CREATE TABLE rx (id bigint PRIMARY KEY)');
      await db.query("SELECT pg_create_logical_replication_slot('rx_slot', 'test_decoding')");
      const restartPoint = async (): Promise<string> => (await db.query<{ lsn: string }>("SELECT restart_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'rx_slot'")).rows[0]!.lsn;
      const createdAt = await restartPoint();
      // Three rounds as the catch-up takes them: writes, (the log), a marker, the stream read to it and confirmed.
      const stream = await LogicalChangeStream.open(cluster.servers[0]!.connection, db, 'rx_slot', 'the test server');
      try {
        for (let round = 0; round < 3; round++) {
          await db.query('INSERT INTO rx SELECT g FROM generate_series($1::bigint, $1::bigint + 99) g', [round * 100]);
          if (can) await logRunningTransactions(db);
          await emitMarker(db, `rx-${round}`);
          const lines: ChangeLine[] = [];
          const deadline = performance.now() + 10_000;
          // A marker is a transaction with no changes: test_decoding prints the message alone (no BEGIN, no COMMIT).
          while (!lines.some((line) => line.data.endsWith(`content:rx-${round}`))) {
            expect(performance.now()).toBeLessThan(deadline);
            lines.push(...await stream.take(10_000, 100));
          }
          stream.confirm(lines.filter((line) => line.data === 'COMMIT').at(-1)!.lsn);
        }
        // The walsender moves the restart point as it processes the confirmations.
        if (can) await expect.poll(restartPoint, { timeout: 5_000 }).not.toBe(createdAt);
      } finally {
        await stream.close();
      }
      // With the log, a stream opened again decodes from near the end; without it, from the slot's creation (the
      // server logs running transactions by itself every 15 s at most).
      if (!can) expect(await restartPoint()).toBe(createdAt);
      await db.query("SELECT pg_drop_replication_slot('rx_slot')");
    } finally {
      await db.end();
    }
  });
});
