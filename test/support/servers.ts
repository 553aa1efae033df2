import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { removeServerDirectory, startLocalServer, type LocalServer, type ServerSettingsBase } from '../../src/local/localServer.js';

export interface TestServers {
  servers: LocalServer[];
  baseDir: string;
  stop(): Promise<void>;
}

/**
 * Starts `count` throwaway PostgreSQL servers (initdb template + pg_ctl,
 * loopback, wal_level=logical) for one test file. Call `stop()` in afterAll.
 * `settingsBase` 'stock': PostgreSQL's own replication limits (see STOCK_SERVER_SETTINGS).
 */
export async function startTestServers(count: number, prefix = 'node', settings?: Record<string, string>, settingsBase: ServerSettingsBase = 'mover'): Promise<TestServers> {
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-test-'));
  const servers: LocalServer[] = [];
  try {
    for (let index = 1; index <= count; index++) {
      servers.push(await startLocalServer({ name: `${prefix}${index}`, baseDir, settingsBase, ...(settings ? { settings } : {}) }));
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
