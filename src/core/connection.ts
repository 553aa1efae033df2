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
