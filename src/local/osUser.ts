import { execFileSync } from 'node:child_process';
import { ReshardError } from '../core/errors.js';

/** The OS identity that local PostgreSQL servers run as. */
export interface ServerOsUser {
  name: string;
  uid: number;
  gid: number;
  /** True when we must switch to this user because we are root. */
  switched: boolean;
  /**
   * The user's home directory when switched: the servers' HOME, where their
   * libpq (a subscription's connection) looks for ~/.pgpass and ~/.postgresql.
   */
  home?: string;
}

/**
 * PostgreSQL refuses to run as root. When we are root, servers run as the
 * unprivileged `postgres` user (RESHARD_PG_OS_USER overrides); otherwise as us.
 */
export function serverOsUser(): ServerOsUser {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) return { name: process.env['USER'] ?? String(uid), uid, gid, switched: false };
  const name = process.env['RESHARD_PG_OS_USER'] ?? 'postgres';
  try {
    const userId = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const groupId = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const home = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(':')[5];
    return { name, uid: userId, gid: groupId, switched: true, ...(home ? { home } : {}) };
  } catch {
    throw new ReshardError(
      'precondition',
      `running as root and the OS user "${name}" does not exist to run PostgreSQL`,
      `create it (useradd --system ${name}) or run reshard as a non-root user`,
    );
  }
}
