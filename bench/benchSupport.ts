/**
 * What the benchmarks share: their progress lines, a short-lived client, the
 * users table as an application would have it, and the raw `psql COPY | psql
 * COPY` pipe that every "÷ raw COPY" figure is measured against.
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import type { ConnectionSettings } from '../src/core/connection.js';

/** A progress line on stderr (stdout carries the result). */
export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export async function withClient<T>(connection: ConnectionSettings, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...connection });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export const USERS_COLUMNS = 'id bigint NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL, profile text NOT NULL, PRIMARY KEY (id)';

/** `users` rows 1..count as an application would have them: distinct emails, timestamps out of key order, 160-byte texts. */
export function usersRowsSql(count: number): string {
  return `SELECT g, 'user' || g || '@example.com', timestamptz '2024-01-01' + g * interval '13 s', rpad(md5(g::text), 160, md5((g # 48271)::text)) FROM generate_series(1::bigint, ${count}) g`;
}

/** psql `fromSql` (a COPY TO STDOUT) on `source` piped into psql `toSql` (a COPY FROM STDIN) on `target`. */
export function pipeCopy(source: ConnectionSettings, target: ConnectionSettings, fromSql: string, toSql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = (c: ConnectionSettings, sql: string): string[] => ['-X', '-q', '-h', c.host, '-p', String(c.port), '-U', c.user, '-d', c.database, '-c', sql];
    const reader = spawn('psql', args(source, fromSql), { stdio: ['ignore', 'pipe', 'inherit'] });
    const writer = spawn('psql', args(target, toSql), { stdio: ['pipe', 'ignore', 'inherit'] });
    reader.stdout.pipe(writer.stdin);
    let done = 0;
    const finish = (code: number | null): void => {
      if (code !== 0) reject(new Error(`psql exited with ${code}`));
      else if (++done === 2) resolve();
    };
    reader.on('exit', finish);
    writer.on('exit', finish);
  });
}
