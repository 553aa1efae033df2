import type { ConnectionSettings } from '../core/connection.js';
import { connectTo } from '../plumbing/connectTo.js';

/** The plain table `reshard demo --adopt` starts from: the demo's users, on one ordinary server, not sharded. */
export const PLAIN_USERS_DEFINITION = 'id bigint NOT NULL, name text NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id)';

const BATCH_ROWS = 20_000;

/**
 * Creates `users` as a plain table on one server and loads rows 1..count
 * (the same rows as the sharded demo's loader), batch by batch. Returns rows loaded.
 */
export async function loadPlainUsers(server: ConnectionSettings, count: number, onProgress?: (rowsLoaded: number) => void): Promise<number> {
  const client = await connectTo({ role: 'the demo\'s plain database', connection: server }, 'reshard demo loader');
  try {
    await client.query(`CREATE TABLE users (${PLAIN_USERS_DEFINITION})`);
    let loaded = 0;
    for (let first = 1; first <= count; first += BATCH_ROWS) {
      const last = Math.min(count, first + BATCH_ROWS - 1);
      await client.query(
        `INSERT INTO users (id, name, payload)
         SELECT id, 'user ' || id, repeat(md5(id::text), 3) FROM generate_series($1::bigint, $2::bigint) AS id`,
        [first, last],
      );
      loaded = last;
      onProgress?.(loaded);
    }
    await client.query('ANALYZE users');
    return loaded;
  } finally {
    await client.end().catch(() => {});
  }
}
