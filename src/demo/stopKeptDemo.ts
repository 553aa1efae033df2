import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ReshardError } from '../core/errors.js';
import { serverOsUser } from '../local/osUser.js';
import { findPostgresBinaries } from '../local/postgresBinaries.js';

/** A line every local server's postgresql.conf gets from startLocalServer: how a reshard-made data directory is told apart. */
const LOCAL_SERVER_MARK = '# reshard local server';

export interface KeptServersStopped {
  baseDir: string;
  /** Data directories whose server was stopped (or was not running). */
  stopped: string[];
}

/**
 * Stops the servers `reshard demo --keep` left running in `baseDir` and
 * removes the directory: `pg_ctl stop` on each of its data directories, as the
 * OS user the servers run as (as root: `postgres`, which PostgreSQL needs).
 * Refuses a directory that is not all reshard-made data directories, so a
 * mistyped path never deletes anything else.
 */
export function stopKeptServers(baseDirText: string, timeoutSeconds = 60): KeptServersStopped {
  const baseDir = resolve(baseDirText);
  const notDemo = (why: string): ReshardError => new ReshardError('bad_input', `${baseDir} is not a directory of servers kept by \`reshard demo --keep\` (${why})`,
    'pass the directory the demo printed ("Servers kept running in …")');
  if (!existsSync(baseDir)) throw notDemo('it does not exist');
  const entries = readdirSync(baseDir, { withFileTypes: true });
  const dataDirs = entries.filter((entry) => entry.isDirectory()).map((entry) => join(baseDir, entry.name));
  if (dataDirs.length === 0) throw notDemo('it holds no data directory');
  for (const entry of entries) if (!entry.isDirectory()) throw notDemo(`it holds ${entry.name}, not a data directory`);
  for (const dataDir of dataDirs) {
    const conf = join(dataDir, 'postgresql.conf');
    if (!existsSync(join(dataDir, 'PG_VERSION')) || !existsSync(conf) || !readFileSync(conf, 'utf8').includes(LOCAL_SERVER_MARK)) {
      throw notDemo(`${dataDir} is not a data directory reshard made`);
    }
  }
  const binaries = findPostgresBinaries();
  const osUser = serverOsUser();
  for (const dataDir of dataDirs) {
    if (!existsSync(join(dataDir, 'postmaster.pid'))) continue;
    try {
      execFileSync(join(binaries.binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', String(timeoutSeconds)], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: (timeoutSeconds + 10) * 1000,
        cwd: baseDir,
        ...(osUser.switched ? { uid: osUser.uid, gid: osUser.gid } : {}),
      });
    } catch (error) {
      const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
      throw new ReshardError('unreachable', `could not stop the server in ${dataDir}${stderr ? `: ${stderr}` : ''}`,
        `stop it by hand (${osUser.switched ? `runuser -u ${osUser.name} -- ` : ''}${join(binaries.binDir, 'pg_ctl')} stop -D ${dataDir}), then remove ${baseDir}`, { cause: error });
    }
  }
  rmSync(baseDir, { recursive: true, force: true });
  return { baseDir, stopped: dataDirs };
}
