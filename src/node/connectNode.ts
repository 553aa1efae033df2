import pg from 'pg';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { errorFields, log } from '../core/log.js';
import { startWaitLog, WAIT_LOG_EVERY_MS } from '../core/waitLog.js';

const logger = log('node');

export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Longest reshard waits for the answer to one statement, or for the next
 * bytes of a COPY, before it gives up on the connection. A network that
 * stalls (packets dropped, nothing reset) never errors by itself: without
 * this bound a move would wait forever. Generous, since DETACH … CONCURRENTLY
 * and CREATE_REPLICATION_SLOT legitimately wait for other transactions;
 * RESHARD_QUERY_TIMEOUT_MS overrides it (the fault tests use seconds).
 */
export const QUERY_TIMEOUT_MS_DEFAULT = 300_000;

export function queryTimeoutMs(): number {
  const configured = Number(process.env['RESHARD_QUERY_TIMEOUT_MS']);
  return Number.isFinite(configured) && configured > 0 ? configured : QUERY_TIMEOUT_MS_DEFAULT;
}

/**
 * Bounds every promise-returning query of `client` by `timeoutMs`: past it the
 * query fails with a timeout error and the connection is destroyed (its
 * protocol state is unknown; every later query on it fails at once). COPY
 * streams are bounded by `meteredCopyStream`'s idle limit instead.
 */
export function boundQueries(client: pg.Client, what: string, timeoutMs = queryTimeoutMs()): pg.Client {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const pending = query(...args);
    if (!(pending instanceof Promise)) return pending;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new ReshardError('timeout', `${what} did not answer within ${timeoutMs} ms`, 'check the network between reshard and the node; the move is rolled back or can be resumed'));
        abandonConnection(client);
      }, timeoutMs);
    });
    // Never the statement's text: a CREATE SUBSCRIPTION carries the source's password.
    const slow = startWaitLog(logger, `a statement on ${what} to answer`, timeoutMs, {}, WAIT_LOG_EVERY_MS, { quiet: true });
    return Promise.race([pending, deadline])
      .then((value) => {
        slow.end('done');
        return value;
      }, (error: unknown) => {
        slow.end('failed', errorFields(error));
        throw lostConnectionError(what, error);
      })
      .finally(() => clearTimeout(timer));
  };
  return client;
}

/**
 * A failure that is not PostgreSQL's answer (a reset, a terminated or
 * abandoned connection) names the session it hit: node-postgres's own
 * text ("write ECONNRESET", "Client has encountered a connection error and is
 * not queryable") says nothing of which node went away.
 */
export function lostConnectionError(what: string, error: unknown): unknown {
  if (!isConnectionLoss(error)) return error;
  return new ReshardError('unreachable', `lost the connection to ${what} (${error.message})`, 'check that the node runs and that the network reaches it', { cause: error });
}

/** Socket errors, and node-postgres's words for a connection that ended or broke; not PostgreSQL's answers, not our own bugs. */
const SOCKET_ERROR_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
const CONNECTION_ENDED = /^Connection terminated|is not queryable|^Client was closed/;

function isConnectionLoss(error: unknown): error is Error {
  if (!(error instanceof Error) || error instanceof ReshardError || error instanceof pg.DatabaseError) return false;
  return SOCKET_ERROR_CODES.has((error as NodeJS.ErrnoException).code ?? '') || CONNECTION_ENDED.test(error.message);
}

/**
 * Drops a connection whose peer stopped answering: its protocol state is
 * unknown, so it is never reused; pending and later queries on it fail at once.
 */
export function abandonConnection(client: pg.ClientBase): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

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

/**
 * reshard's own sessions commit durably whatever the server's default: the
 * journal records a step as done once the node's commit returns, and with
 * synchronous_commit = off a crash of the node right after can lose that
 * commit (a staged leaf, a switch in the catalog) while the journal keeps it.
 */
export const DURABLE_COMMIT_OPTIONS = '-c synchronous_commit=on';

/** One connection, with a bounded connect time and a clear error when it fails. */
export async function connectTo(target: ConnectionTarget, applicationName = 'reshard'): Promise<pg.Client> {
  const client = boundQueries(new pg.Client({ ...clientConfig(target.connection, applicationName), options: DURABLE_COMMIT_OPTIONS }), target.role);
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
