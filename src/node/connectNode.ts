import pg from 'pg';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';

export const CONNECT_TIMEOUT_MS = 5_000;

/** Who we are connecting to, for messages: never includes a password. */
export interface ConnectionTarget {
  /** "node n1" or "catalog". */
  role: string;
  connection: ConnectionSettings;
}

export function unreachableError(target: ConnectionTarget, error: unknown): ReshardError {
  const reason = error instanceof Error ? error.message.replace(/password[^,;]*/gi, 'password …') : String(error);
  return new ReshardError(
    'unreachable',
    `${target.role} at ${describeConnection(target.connection)} is unreachable (${reason})`,
    'check that the server runs and the host, port, user, database and password are right',
    { cause: error },
  );
}

export function clientConfig(connection: ConnectionSettings, applicationName: string): pg.ClientConfig {
  return {
    host: connection.host,
    port: connection.port,
    database: connection.database,
    user: connection.user,
    ...(connection.password !== undefined ? { password: connection.password } : {}),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: applicationName,
    keepAlive: true,
  };
}

/** One connection, with a bounded connect time and a clear error when it fails. */
export async function connectTo(target: ConnectionTarget, applicationName = 'reshard'): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(target.connection, applicationName));
  // A dropped connection must surface as a query error, not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw unreachableError(target, error);
  }
  return client;
}
