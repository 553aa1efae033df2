import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { badInput, ReshardError } from '../core/errors.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import { DASHBOARD_ACTIONS, DashboardActions, type DashboardAction } from './actions.js';
import type { DashboardState } from './dashboardState.js';
import { DashboardMonitor, MONITOR_LIMITS_DEFAULT, type MonitorLimits } from './monitor.js';

export const DASHBOARD_HOST_DEFAULT = '127.0.0.1';
export const DASHBOARD_PORT_DEFAULT = 7463;
/** The control token header; `Authorization: Bearer <token>` is accepted too. */
export const TOKEN_HEADER = 'x-reshard-token';
export const TOKEN_ENV = 'RESHARD_DASHBOARD_TOKEN';
export const READ_TOKEN_ENV = 'RESHARD_DASHBOARD_READ_TOKEN';

/** Open event streams at once: each holds a socket; a page opens one. */
const EVENT_STREAMS_MAX = 64;
/** A comment line this often keeps proxies from closing an idle event stream. */
const HEARTBEAT_MS = 15_000;
/** Bigger request bodies are refused: the actions take none. */
const BODY_BYTES_MAX = 4_096;

export interface DashboardOptions {
  access: ClusterAccess;
  host?: string;
  port?: number;
  /** Needed (header) for pause, resume, cancel and rollback. */
  controlToken: string;
  /** When set, reading the state, events and metrics needs this token (or the control token) too. */
  readToken?: string;
  limits?: MonitorLimits;
}

export interface RunningDashboard {
  url: string;
  port: number;
  monitor: DashboardMonitor;
  close(): Promise<void>;
}

export function generateToken(): string {
  return randomBytes(18).toString('base64url');
}

/** The page's files: copied next to the compiled module by the build, or read from the source tree. */
function staticDirectory(): string {
  for (const candidate of ['./static/', '../../src/dashboard/static/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new ReshardError('unsupported', 'the dashboard page is missing from this installation', 'reinstall reshard (npm ci runs the build that copies it)');
}

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
};

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  response.end(`${JSON.stringify(body)}\n`);
}

function sendError(response: ServerResponse, status: number, code: string, message: string, fix: string): void {
  sendJson(response, status, { error: { code, message, fix } });
}

const STATUS_BY_ERROR: Record<string, number> = { not_found: 404, conflict: 409, precondition: 409, bad_input: 400, unreachable: 503, timeout: 504, unsupported: 501 };

function tokenMatches(given: string | undefined, expected: string | undefined): boolean {
  if (given === undefined || expected === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function tokenOf(request: IncomingMessage, url: URL): string | undefined {
  const header = request.headers[TOKEN_HEADER];
  if (typeof header === 'string' && header.length > 0) return header;
  const authorization = request.headers.authorization;
  if (authorization?.startsWith('Bearer ')) return authorization.slice('Bearer '.length);
  // EventSource cannot send headers: a read token may come in the query string.
  return url.searchParams.get('token') ?? undefined;
}

/**
 * Serves the dashboard: the page, its JSON API (`/api/state`, the event
 * stream `/api/events`, the actions under `/api/migration/`), and `/metrics`.
 * Plain node:http: a handful of routes need no framework.
 */
export async function startDashboard(options: DashboardOptions): Promise<RunningDashboard> {
  const host = options.host ?? DASHBOARD_HOST_DEFAULT;
  const port = options.port ?? DASHBOARD_PORT_DEFAULT;
  const staticDir = staticDirectory();
  const files = new Map(Object.entries(STATIC_FILES).map(([path, entry]) => [path, { body: readFileSync(`${staticDir}${entry.file}`), type: entry.type }]));
  const monitor = new DashboardMonitor(options.access, options.limits ?? MONITOR_LIMITS_DEFAULT);
  const actions = new DashboardActions(options.access);
  await monitor.start();
  const streams = new Set<ServerResponse>();

  const canRead = (request: IncomingMessage, url: URL): boolean => {
    if (options.readToken === undefined) return true;
    const given = tokenOf(request, url);
    return tokenMatches(given, options.readToken) || tokenMatches(given, options.controlToken);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://dashboard.invalid');
    const file = files.get(url.pathname);
    if (request.method === 'GET' && file) {
      response.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'cache-control': 'no-cache' });
      response.end(file.body);
      return;
    }
    if (request.method === 'GET' && (url.pathname.startsWith('/api/') || url.pathname === '/metrics')) {
      if (!canRead(request, url)) {
        sendError(response, 401, 'unauthorized', 'this dashboard needs a token to be read', `send the read token in the X-Reshard-Token header or ?token= (it is set with ${READ_TOKEN_ENV})`);
        return;
      }
      if (url.pathname === '/api/state') return sendJson(response, 200, monitor.current());
      if (url.pathname === '/api/events') return openEventStream(request, response);
      if (url.pathname === '/metrics') {
        const text = await monitor.metrics.text();
        response.writeHead(200, { 'content-type': monitor.metrics.contentType, 'cache-control': 'no-store' });
        response.end(text);
        return;
      }
    }
    const action = /^\/api\/migration\/([a-z]+)$/.exec(url.pathname)?.[1];
    if (action !== undefined && DASHBOARD_ACTIONS.includes(action as DashboardAction)) {
      if (request.method !== 'POST') {
        response.setHeader('allow', 'POST');
        return sendError(response, 405, 'method_not_allowed', `${action} is a POST`, `POST /api/migration/${action} with the token in the X-Reshard-Token header`);
      }
      await discardBody(request);
      const given = tokenOf(request, new URL('http://dashboard.invalid'));
      if (given === undefined) {
        return sendError(response, 401, 'unauthorized', `${action} needs the dashboard's control token`, `send it in the X-Reshard-Token header: it was printed when the dashboard started, or set ${TOKEN_ENV}`);
      }
      if (!tokenMatches(given, options.controlToken)) {
        return sendError(response, 403, 'forbidden', 'the control token is wrong', `use the token printed when the dashboard started, or the value of ${TOKEN_ENV}`);
      }
      try {
        const answer = await actions.run(action as DashboardAction);
        return sendJson(response, answer.status, { action, ...answer.body });
      } catch (error) {
        if (error instanceof ReshardError) return sendError(response, STATUS_BY_ERROR[error.code] ?? 500, error.code, error.message, error.fix);
        throw error;
      }
    }
    sendError(response, 404, 'not_found', `no such page: ${request.method} ${url.pathname}`, 'the dashboard serves /, /api/state, /api/events, /metrics and POST /api/migration/{pause,resume,cancel,rollback}');
  };

  const openEventStream = (request: IncomingMessage, response: ServerResponse): void => {
    if (streams.size >= EVENT_STREAMS_MAX) {
      sendError(response, 503, 'busy', `the dashboard already serves ${EVENT_STREAMS_MAX} live pages`, 'close some, or read /api/state instead');
      return;
    }
    response.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (state: DashboardState): void => {
      response.write(`event: state\ndata: ${JSON.stringify(state)}\n\n`);
    };
    response.write('retry: 2000\n\n');
    send(monitor.current());
    const unsubscribe = monitor.subscribe(send);
    const heartbeat = setInterval(() => response.write(': ping\n\n'), HEARTBEAT_MS);
    streams.add(response);
    request.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
      streams.delete(response);
    });
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) sendError(response, 500, 'internal', error instanceof Error ? error.message : String(error), 'see the dashboard process output; report it if it repeats');
      else response.end();
    });
  });
  try {
    await listen(server, host, port);
  } catch (error) {
    await monitor.stop();
    throw error;
  }
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${bound}/`,
    port: bound,
    monitor,
    async close() {
      for (const stream of streams) stream.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await monitor.stop();
    },
  };
}

async function discardBody(request: IncomingMessage): Promise<void> {
  let bytes = 0;
  for await (const chunk of request) {
    bytes += (chunk as Buffer).length;
    if (bytes > BODY_BYTES_MAX) break;
  }
}

/** Listens, turning the usual failures into one clear line. */
function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (error.code === 'EADDRINUSE') reject(new ReshardError('conflict', `port ${port} on ${host} is already in use`, 'pass another --port, or stop the program that listens there'));
      else if (error.code === 'EACCES') reject(new ReshardError('precondition', `this user may not listen on port ${port}`, 'pass a --port above 1023'));
      else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') reject(badInput(`--host ${host} is not an address of this machine`, 'pass --host 127.0.0.1 (default), 0.0.0.0 for every interface, or one of this machine\'s addresses'));
      else reject(error);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
