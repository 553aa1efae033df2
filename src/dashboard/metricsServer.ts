import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { badInput, ReshardError } from '../core/errors.js';

/** What a metrics endpoint serves: Prometheus text and its content type. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

export interface RunningMetricsServer {
  /** http://host:port/metrics */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (and nothing else) for a long-running process such as
 * `reshard autopilot`. Loopback by default; port 0 picks a free one.
 */
export async function startMetricsServer(source: MetricsSource, options: { host: string; port: number; portOption: string; hostOption: string }): Promise<RunningMetricsServer> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://metrics.invalid').pathname;
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('only GET /metrics is served here\n');
      return;
    }
    source.text().then((text) => {
      response.writeHead(200, { 'content-type': source.contentType, 'cache-control': 'no-store' });
      response.end(text);
    }, (error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      response.end(`${error instanceof Error ? error.message : String(error)}\n`);
    });
  });
  await listen(server, options);
  const port = (server.address() as AddressInfo).port;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shownHost}:${port}/metrics`,
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** Listens, turning the usual failures into one clear line naming the option to change. */
function listen(server: Server, options: { host: string; port: number; portOption: string; hostOption: string }): Promise<void> {
  const { host, port, portOption, hostOption } = options;
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (error.code === 'EADDRINUSE') reject(new ReshardError('conflict', `port ${port} on ${host} is already in use`, `pass another ${portOption}, or stop the program that listens there`));
      else if (error.code === 'EACCES') reject(new ReshardError('precondition', `this user may not listen on port ${port}`, `pass a ${portOption} above 1023`));
      else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') reject(badInput(`${hostOption} ${host} is not an address of this machine`, `pass ${hostOption} 127.0.0.1 (default) or one of this machine's addresses`));
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
