/**
 * How to reach one PostgreSQL database. The password is never printed, never
 * logged and never stored in the catalog's columns: `describeConnection` is
 * the only way a connection is shown.
 */
export interface ConnectionSettings {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string | undefined;
  /**
   * libpq parameters beyond the five above that reshard honours (`sslmode`,
   * `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `connect_timeout`),
   * by libpq's names. Never a password. Absent: libpq's defaults.
   */
  params?: Readonly<Record<string, string>> | undefined;
}

/** `user@host:port/database`, safe to print. */
export function describeConnection(connection: ConnectionSettings): string {
  return `${connection.user}@${connection.host}:${connection.port}/${connection.database}`;
}

/**
 * `postgres://user@host:port/database`, never with a password: what
 * `--catalog`, RESHARD_CATALOG, `node add --url` and `new URL()` accept.
 */
export function connectionUrl(connection: ConnectionSettings): string {
  const host = connection.host.includes(':') ? `[${connection.host}]` : connection.host;
  return `postgres://${encodeURIComponent(connection.user)}@${host}:${connection.port}/${encodeURIComponent(connection.database)}`;
}

/**
 * Parses `postgres://user:pass@host:port/db` or `postgresql://…`.
 * Returns undefined for anything else so the caller can say what is wrong.
 */
export function parseConnectionUrl(url: string, defaults: Partial<ConnectionSettings> = {}): ConnectionSettings | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') return undefined;
  const port = parsed.port ? Number(parsed.port) : (defaults.port ?? 5432);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || defaults.database || 'postgres';
  const user = decodeURIComponent(parsed.username) || defaults.user || 'postgres';
  const password = parsed.password ? decodeURIComponent(parsed.password) : defaults.password;
  const host = parsed.hostname.replace(/^\[|\]$/g, '') || defaults.host || '127.0.0.1';
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  return { host, port, database, user, password };
}
