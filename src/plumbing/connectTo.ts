import pg from 'pg';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { sslModeOf } from '../core/conninfo.js';
import { ReshardError } from '../core/errors.js';
import { sslAttempts, type SslSetting } from './tlsOptions.js';
import { errorFields, log } from './log.js';
import { startWaitLog, WAIT_LOG_EVERY_MS } from './waitLog.js';

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
  if (error instanceof ReshardError) return error;
  const reason = error instanceof Error ? error.message.replace(/password[^,;]*/gi, 'password …') : String(error);
  return new ReshardError(
    'unreachable',
    `${target.role} at ${describeConnection(target.connection)} is unreachable (${reason})`,
    unreachableFix(error, target.connection),
    { cause: error },
  );
}

/** Node's and OpenSSL's codes for a server certificate that does not check out. */
const CERTIFICATE_ERROR = /^(ERR_TLS_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_)/;

function unreachableFix(error: unknown, connection: ConnectionSettings): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (CERTIFICATE_ERROR.test(code)) {
    return `the server's certificate did not verify for sslmode=${sslModeOf(connection)}: give sslrootcert the CA that signed it, and use the host name the certificate names`;
  }
  if (error instanceof Error && error.message.includes('does not support SSL')) {
    return `the server has ssl = off: turn it on, or use sslmode=prefer or disable (now ${sslModeOf(connection)})`;
  }
  return 'check that the server runs and the host, port, user, database, password and sslmode are right';
}

/** libpq waits at least this long when connect_timeout is set (smaller values are raised to it). */
const LIBPQ_CONNECT_TIMEOUT_SECONDS_MIN = 2;

/** connect_timeout in ms; 0 or absent means reshard's own bound, never an endless wait. */
function connectTimeoutMs(connection: ConnectionSettings): number {
  const seconds = Number(connection.params?.['connect_timeout'] ?? 0);
  return seconds > 0 ? Math.max(seconds, LIBPQ_CONNECT_TIMEOUT_SECONDS_MIN) * 1000 : CONNECT_TIMEOUT_MS;
}

/**
 * The pg client settings for `connection`: address, password, timeouts,
 * application_name (the connection's own, else `applicationName`) and TLS
 * from its sslmode — the first setting to try, or `ssl` when given. Every
 * connection reshard opens is built here.
 */
export function clientConfig(connection: ConnectionSettings, applicationName: string, ssl: SslSetting = firstSslSetting(connection)): pg.ClientConfig {
  return {
    host: connection.host,
    port: connection.port,
    database: connection.database,
    user: connection.user,
    ...(connection.password !== undefined ? { password: connection.password } : {}),
    connectionTimeoutMillis: connectTimeoutMs(connection),
    application_name: connection.params?.['application_name'] ?? applicationName,
    keepAlive: true,
    ssl,
  };
}

/**
 * Which of a connection's TLS attempts (sslAttempts) worked last time, by
 * server and sslmode. node-postgres cannot continue on a socket the server
 * answered "no TLS", so a fallback costs a second connection; remembering it
 * makes every later connection of this process to that server go straight to
 * the setting that works (prefer on a server without TLS: plaintext).
 */
const workingAttemptIndex = new Map<string, number>();

function attemptKey(connection: ConnectionSettings): string {
  return `${connection.host}\u0000${connection.port}\u0000${sslModeOf(connection)}`;
}

function firstSslSetting(connection: ConnectionSettings): SslSetting {
  const attempts = sslAttempts(connection);
  return attempts[workingAttemptIndex.get(attemptKey(connection)) ?? 0] ?? attempts[0]!;
}

/** Whether the next TLS setting may be tried after `error`: libpq's fallbacks, nothing more. */
function mayFallBack(connection: ConnectionSettings, error: unknown): boolean {
  const mode = sslModeOf(connection);
  // prefer: only when the server says it does not do TLS.
  if (mode === 'prefer') return error instanceof Error && error.message.includes('does not support SSL');
  // allow: when the server refuses the plaintext connection (pg_hba.conf hostssl).
  if (mode === 'allow') return error instanceof pg.DatabaseError;
  return false;
}

/**
 * Connects a new client for `connection` with `extra` settings, trying the
 * sslmode's TLS settings in libpq's order. Throws the connection error (the
 * caller words it); the client's queries are bounded (`boundQueries`).
 */
export async function openClient(connection: ConnectionSettings, applicationName: string, extra: Partial<pg.ClientConfig>, what: string): Promise<pg.Client> {
  const key = attemptKey(connection);
  const remembered = workingAttemptIndex.get(key) ?? 0;
  try {
    return await connectFromAttempt(connection, applicationName, extra, what, remembered);
  } catch (error) {
    if (remembered === 0) throw error;
    // The server may have changed since (TLS turned on or required): libpq's whole order once more.
    workingAttemptIndex.delete(key);
    return connectFromAttempt(connection, applicationName, extra, what, 0);
  }
}

async function connectFromAttempt(connection: ConnectionSettings, applicationName: string, extra: Partial<pg.ClientConfig>, what: string, first: number): Promise<pg.Client> {
  const attempts = sslAttempts(connection);
  const key = attemptKey(connection);
  for (let index = first; ; index++) {
    const client = boundQueries(new pg.Client({ ...clientConfig(connection, applicationName, attempts[index]!), ...extra }), what);
    // A dropped connection must surface as a query error, not crash the process.
    client.on('error', () => {});
    try {
      await client.connect();
      if (attempts.length > 1) workingAttemptIndex.set(key, index);
      return client;
    } catch (error) {
      await client.end().catch(() => {});
      if (index + 1 >= attempts.length || !mayFallBack(connection, error)) throw error;
    }
  }
}

/**
 * Client settings for a pool (which connects later, on its own): for an
 * sslmode with a fallback (prefer, allow) one connection is made first to
 * learn which TLS setting this server needs.
 */
export async function negotiatedClientConfig(connection: ConnectionSettings, applicationName: string, what: string): Promise<pg.ClientConfig> {
  if (sslAttempts(connection).length > 1 && !workingAttemptIndex.has(attemptKey(connection))) {
    const client = await openClient(connection, applicationName, {}, what);
    await client.end().catch(() => {});
  }
  return clientConfig(connection, applicationName);
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
  try {
    return await openClient(target.connection, applicationName, { options: DURABLE_COMMIT_OPTIONS }, target.role);
  } catch (error) {
    throw unreachableError(target, error);
  }
}
