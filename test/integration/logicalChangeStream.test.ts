import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { lsnValue } from '../../src/core/lsn.js';
import { LogicalChangeStream, type ChangeLine } from '../../src/node/logicalChangeStream.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/** Lines until (and with) the `commits`-th COMMIT, within 10 s. */
async function takeCommits(stream: LogicalChangeStream, commits: number): Promise<ChangeLine[]> {
  const taken: ChangeLine[] = [];
  const deadline = performance.now() + 10_000;
  while (taken.filter((line) => line.data.startsWith('COMMIT')).length < commits) {
    if (performance.now() > deadline) throw new Error(`only ${JSON.stringify(taken)} within 10 s`);
    taken.push(...await stream.take(1, 100));
  }
  return taken;
}

describe('a logical slot read as a stream (START_REPLICATION)', () => {
  let cluster: TestServers;
  let db: pg.Client;
  beforeAll(async () => {
    // Stock settings but a short wal_sender_timeout: a stream that does not answer the walsender's keepalives is ended within it.
    cluster = await startTestServers(1, 'cs', { wal_sender_timeout: '1s' }, 'stock');
    db = await connectTo(cluster.servers[0]!.connection);
    // As reshard's own sessions: a logical slot decodes only flushed WAL (the test servers commit asynchronously).
    await db.query('SET synchronous_commit = on');
    await db.query('CREATE TABLE cs (id bigint PRIMARY KEY, note text)');
  });
  afterAll(async () => {
    await db?.end();
    await cluster?.stop();
  });

  const confirmedPosition = async (slot: string): Promise<string> =>
    (await db.query<{ lsn: string }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows[0]!.lsn;

  it('sends every committed change once confirmed, and the unconfirmed ones again to the next stream', async () => {
    await db.query("SELECT pg_create_logical_replication_slot('cs_once', 'test_decoding')");
    const first = await LogicalChangeStream.open(cluster.servers[0]!.connection, db, 'cs_once', 'the test server');
    try {
      await db.query("INSERT INTO cs VALUES (1, 'one')");
      await db.query("INSERT INTO cs VALUES (2, 'two')");
      const lines = await takeCommits(first, 2);
      expect(lines.map((line) => line.data)).toEqual([
        'BEGIN', "table public.cs: INSERT: id[bigint]:1 note[text]:'one'", 'COMMIT',
        'BEGIN', "table public.cs: INSERT: id[bigint]:2 note[text]:'two'", 'COMMIT',
      ]);
      // Only the first transaction is confirmed.
      first.confirm(lines[2]!.lsn);
      await expect.poll(() => confirmedPosition('cs_once'), { timeout: 5_000 }).toBe(lines[2]!.lsn);
      // Quiet for longer than wal_sender_timeout: the stream answers the keepalives and stays up.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      await db.query("INSERT INTO cs VALUES (3, 'three')");
      expect((await takeCommits(first, 1)).map((line) => line.data)).toEqual(['BEGIN', "table public.cs: INSERT: id[bigint]:3 note[text]:'three'", 'COMMIT']);
    } finally {
      await first.close();
    }
    // A new stream starts after the confirmed COMMIT: the second and third transactions again, not the first.
    const second = await LogicalChangeStream.open(cluster.servers[0]!.connection, db, 'cs_once', 'the test server');
    try {
      const again = await takeCommits(second, 2);
      expect(again.filter((line) => line.data.startsWith('table')).map((line) => line.data)).toEqual([
        "table public.cs: INSERT: id[bigint]:2 note[text]:'two'", "table public.cs: INSERT: id[bigint]:3 note[text]:'three'",
      ]);
      // Never behind what the slot already confirmed.
      second.confirm('0/1');
      expect(lsnValue(await confirmedPosition('cs_once'))).toBeGreaterThan(1n);
    } finally {
      await second.close();
    }
    await expect.poll(async () => (await db.query("SELECT active FROM pg_replication_slots WHERE slot_name = 'cs_once'")).rows[0]!.active, { timeout: 5_000 }).toBe(false);
    await db.query("SELECT pg_drop_replication_slot('cs_once')");
  });

  it('takes the slot from the walsender of an earlier connection that still holds it', async () => {
    await db.query("SELECT pg_create_logical_replication_slot('cs_stale', 'test_decoding')");
    // The earlier connection: never closed, as after a network cut.
    const stale = await LogicalChangeStream.open(cluster.servers[0]!.connection, db, 'cs_stale', 'the test server');
    await expect.poll(async () => (await db.query("SELECT active FROM pg_replication_slots WHERE slot_name = 'cs_stale'")).rows[0]!.active, { timeout: 5_000 }).toBe(true);
    const fresh = await LogicalChangeStream.open(cluster.servers[0]!.connection, db, 'cs_stale', 'the test server');
    try {
      await db.query("INSERT INTO cs VALUES (4, 'four')");
      expect((await takeCommits(fresh, 1)).map((line) => line.data)).toContain("table public.cs: INSERT: id[bigint]:4 note[text]:'four'");
      // The earlier stream was ended by the server: reading it says so.
      await expect(stale.take(1, 1_000)).rejects.toThrow(/change stream of the test server (failed|ended)/);
    } finally {
      await stale.close();
      await fresh.close();
    }
    await expect.poll(async () => (await db.query("SELECT active FROM pg_replication_slots WHERE slot_name = 'cs_stale'")).rows[0]!.active, { timeout: 5_000 }).toBe(false);
    await db.query("SELECT pg_drop_replication_slot('cs_stale')");
  });

  it('names a slot that is gone', async () => {
    await expect(LogicalChangeStream.open(cluster.servers[0]!.connection, db, 'cs_missing', 'the test server')).rejects.toThrow(/replication slot cs_missing is gone from the test server/);
  });
});
