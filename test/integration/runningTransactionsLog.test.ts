import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { advanceChangeSlot, canLogRunningTransactions, emitMarker, logRunningTransactions, peekChanges } from '../../src/node/adoptSource.js';
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
      // Three rounds as the catch-up takes them: writes, (the log), a marker, the stream read and moved on.
      for (let round = 0; round < 3; round++) {
        await db.query('INSERT INTO rx SELECT g FROM generate_series($1::bigint, $1::bigint + 99) g', [round * 100]);
        if (can) await logRunningTransactions(db);
        await emitMarker(db, `rx-${round}`);
        const rows = await peekChanges(db, 'rx_slot', 10_000);
        const lastCommit = rows.filter((row) => row.data.startsWith('COMMIT')).at(-1);
        await advanceChangeSlot(db, 'rx_slot', lastCommit!.lsn);
      }
      // With the log, the next peek starts near the end of the stream; without it, at the slot's creation (the server
      // logs running transactions by itself every 15 s at most).
      if (can) expect(await restartPoint()).not.toBe(createdAt);
      else expect(await restartPoint()).toBe(createdAt);
      await db.query("SELECT pg_drop_replication_slot('rx_slot')");
    } finally {
      await db.end();
    }
  });
});
