import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { removeServerDirectory, startLocalServer, type LocalServer, type ServerSettingsBase, type LocalServerOptions } from '../../src/local/localServer.js';

/**
 * Which settings test servers start from:
 * - 'stockLimits' (the default): PostgreSQL's stock replication limits (4 logical replication
 *   workers, 8 worker processes, 10 replication slots, 10 WAL senders), so every test runs
 *   within what a real cluster has on first contact; only wal_retrieve_retry_interval is
 *   100 ms instead of 5 s — it sets how soon the launcher starts a new subscription's worker,
 *   not how many can run, and the 5 s default adds seconds to every migration of every test.
 * - 'stock': nothing changed but wal_level = logical (test/integration/stockSettings.test.ts).
 * - 'tuned': MOVER_SERVER_SETTINGS, for a test that needs more than stock limits.
 */
export type TestServerProfile = 'stockLimits' | 'stock' | 'tuned';

const PROFILES: Record<TestServerProfile, { base: ServerSettingsBase; settings: Record<string, string> }> = {
  stockLimits: { base: 'stock', settings: { wal_retrieve_retry_interval: '100ms' } },
  stock: { base: 'stock', settings: {} },
  tuned: { base: 'mover', settings: {} },
};

export interface TestServers {
  servers: LocalServer[];
  baseDir: string;
  stop(): Promise<void>;
}

/**
 * Starts `count` throwaway PostgreSQL servers (initdb template + pg_ctl,
 * loopback, wal_level=logical) for one test file. Call `stop()` in afterAll.
 * `settings` apply on top of the `profile`'s.
 */
export async function startTestServers(count: number, prefix = 'node', settings?: Record<string, string>, profile: TestServerProfile = 'stockLimits', options: Pick<LocalServerOptions, 'tls'> = {}): Promise<TestServers> {
  const { base, settings: profileSettings } = PROFILES[profile];
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-test-'));
  const servers: LocalServer[] = [];
  try {
    for (let index = 1; index <= count; index++) {
      servers.push(await startLocalServer({ name: `${prefix}${index}`, baseDir, settingsBase: base, settings: { ...profileSettings, ...settings }, ...options }));
    }
  } catch (error) {
    await Promise.allSettled(servers.map((server) => server.stop('immediate')));
    removeServerDirectory(baseDir);
    throw error;
  }
  return {
    servers,
    baseDir,
    async stop() {
      await Promise.allSettled(servers.map((server) => server.stop('fast')));
      removeServerDirectory(baseDir);
    },
  };
}

/** A pg client for a test server; the caller ends it. */
export async function connectTo(connection: ConnectionSettings): Promise<pg.Client> {
  const client = new pg.Client({ ...connection });
  await client.connect();
  return client;
}

/** One statement on a test server on a connection of its own (opened and ended around it). */
export async function queryOnce(server: { connection: ConnectionSettings }, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = await connectTo(server.connection);
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}
