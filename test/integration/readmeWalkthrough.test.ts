import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../../src/local/localServer.js';
import { RESHARD_BIN } from '../support/cli.js';
import { connectTo } from '../support/servers.js';

const execFileAsync = promisify(execFile);
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/**
 * PostgreSQL's defaults for every setting reshard's own local servers tune:
 * a stranger's server, where only wal_level was changed.
 */
const STOCK_SETTINGS: Record<string, string> = {
  wal_level: 'logical',
  max_replication_slots: '10',
  max_wal_senders: '10',
  max_logical_replication_workers: '4',
  max_worker_processes: '8',
  max_sync_workers_per_subscription: '2',
  wal_retrieve_retry_interval: '5s',
  max_connections: '100',
};

const USERS = 20_000;

/** The shell block of the README's "Using it on a cluster", one command per element. */
function readmeClusterCommands(): string[] {
  const readme = readFileSync(README, 'utf8');
  const section = readme.slice(readme.indexOf('## Using it on a cluster'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README has no shell block under "Using it on a cluster"');
  return block.replace(/\\\n\s*/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
}

/** Shell words of one line: single and double quotes, and a trailing comment. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let index = 0; index < line.length; index++) {
    const char = line[index]!;
    if (char === "'" || char === '"') {
      const end = line.indexOf(char, index + 1);
      word = (word ?? '') + line.slice(index + 1, end);
      index = end;
    } else if (char === ' ' || char === '\t') {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (char === '#' && word === undefined) {
      break;
    } else {
      word = (word ?? '') + char;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

describe("the README's \"Using it on a cluster\", followed literally on stock-settings servers", () => {
  let servers: LocalServer[] = [];
  let baseDir: string;
  beforeAll(async () => {
    baseDir = mkdtempSync(join(tmpdir(), 'reshard-readme-'));
    for (let index = 0; index < 4; index++) {
      servers.push(await startLocalServer({ name: `db${index}`, baseDir, durable: true, settings: STOCK_SETTINGS }));
    }
    // A stranger's servers already have their application database.
    for (const server of servers.slice(1)) {
      const client = await connectTo(server.connection);
      await client.query('CREATE DATABASE app');
      await client.end();
    }
  });
  afterAll(async () => {
    await Promise.allSettled(servers.map((server) => server.stop('fast')));
    removeServerDirectory(baseDir);
    servers = [];
  });

  it('runs every command with exit code 0 and ends with every row in place once', async () => {
    const hostOf = (text: string): string => text.replace(/\bdb(\d):5432\b/g, (_, index: string) => `127.0.0.1:${servers[Number(index)]!.port}`);
    const workDir = mkdtempSync(join(baseDir, 'cwd-'));
    // The data files the README's load commands read (its text says what they hold).
    writeFileSync(join(workDir, 'users.csv'), 'id,name\n' + Array.from({ length: USERS }, (_, index) => `${index + 1},user ${index + 1}`).join('\n') + '\n');
    writeFileSync(join(workDir, 'orders.csv'), 'user_id,id,amount\n' + Array.from({ length: USERS }, (_, index) => `${index + 1},1,${(index % 100) + 0.5}`).join('\n') + '\n');

    const env: NodeJS.ProcessEnv = { ...process.env, RESHARD_CATALOG: '', PGHOST: '', PGPORT: '', PGDATABASE: '' };
    const ran: string[] = [];
    for (const line of readmeClusterCommands()) {
      const words = shellWords(hostOf(line));
      if (words[0] === 'export') {
        const [name, ...value] = words[1]!.split('=');
        env[name!] = value.join('=');
        continue;
      }
      expect(words[0], `README line "${line}" is a reshard command`).toBe('reshard');
      let result: { code: number; stdout: string; stderr: string };
      try {
        const { stdout, stderr } = await execFileAsync(process.execPath, [RESHARD_BIN, ...words.slice(1)], { env, cwd: workDir, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 });
        result = { code: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code?: number; stdout?: string; stderr?: string };
        result = { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
      }
      expect(result.code, `\`${line}\` exited ${result.code}: ${result.stderr}`).toBe(0);
      ran.push(words.slice(0, 3).join(' '));
      console.log(`walk-through: \`${line}\` exited 0`);
    }
    // The walk-through covers a whole life: set-up, load, grow, inspect, shrink.
    for (const step of ['reshard init', 'reshard table create', 'reshard load', 'reshard plan', 'reshard rebalance', 'reshard status', 'reshard verify', 'reshard doctor', 'reshard node remove']) {
      expect(ran.some((command) => command.startsWith(step)), `the walk-through runs ${step}`).toBe(true);
    }
    expect(ran.filter((command) => command === 'reshard node add').length).toBeGreaterThanOrEqual(3);
    const rebalances = ran.filter((command) => command === 'reshard rebalance');
    expect(rebalances.length).toBeGreaterThanOrEqual(2);

    // Every row is in place once: each user id 1..USERS exactly once over the nodes, each with its order.
    const seen = new Map<number, number>();
    let orders = 0;
    for (const server of servers.slice(1)) {
      const client = await connectTo({ ...server.connection, database: 'app' });
      try {
        for (const row of (await client.query<{ id: number }>('SELECT id::int AS id FROM users')).rows) seen.set(row.id, (seen.get(row.id) ?? 0) + 1);
        orders += (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM orders o JOIN users u ON u.id = o.user_id')).rows[0]!.n;
      } finally {
        await client.end();
      }
    }
    expect(seen.size).toBe(USERS);
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
    expect(orders).toBe(USERS);
  }, 900_000);
});
