import { badInput } from '../../core/errors.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { DASHBOARD_HOST_DEFAULT, DASHBOARD_PORT_DEFAULT, generateToken, READ_TOKEN_ENV, startDashboard, TOKEN_ENV } from '../../dashboard/server.js';
import type { Output } from '../output.js';

export interface DashboardCommandOptions { host?: string; port?: string }

/** Tokens shorter than this are guessable over a loopback socket in minutes. */
const TOKEN_CHARS_MIN = 16;

/** A TCP port; 0 asks the system for any free one. */
export function parsePort(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isInteger(port) || port > 65535) {
    throw badInput(`${option} must be a port number from 0 to 65535, got "${value}"`, `pass e.g. ${option} ${DASHBOARD_PORT_DEFAULT} (0 picks a free port)`);
  }
  return port;
}

function tokenFromEnv(name: string, env: NodeJS.ProcessEnv): string | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  if (value.length < TOKEN_CHARS_MIN) throw badInput(`${name} is shorter than ${TOKEN_CHARS_MIN} characters`, `set it to a long random string, e.g. $(openssl rand -base64 24), or unset it to get a generated token`);
  return value;
}

export interface DashboardSettings {
  host: string;
  port: number;
  controlToken: string;
  /** The control token came from the environment, so it is not printed. */
  tokenFromEnv: boolean;
  readToken: string | undefined;
}

export function dashboardSettings(options: DashboardCommandOptions, env: NodeJS.ProcessEnv = process.env): DashboardSettings {
  const host = options.host ?? DASHBOARD_HOST_DEFAULT;
  if (host.trim() === '') throw badInput('--host is empty', `pass --host ${DASHBOARD_HOST_DEFAULT}`);
  const port = parsePort(options.port, '--port', DASHBOARD_PORT_DEFAULT);
  const fromEnv = tokenFromEnv(TOKEN_ENV, env);
  return { host, port, controlToken: fromEnv ?? generateToken(), tokenFromEnv: fromEnv !== undefined, readToken: tokenFromEnv(READ_TOKEN_ENV, env) };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Prints where the dashboard is and, once, the control token it generated. */
export function announceDashboard(say: (line: string) => void, url: string, settings: DashboardSettings): void {
  say(`Dashboard: ${url}`);
  say(settings.tokenFromEnv
    ? `Control token (pause, resume, cancel, rollback): the value of ${TOKEN_ENV}.`
    : `Control token (pause, resume, cancel, rollback), shown only now: ${settings.controlToken}`);
  if (!LOOPBACK.test(settings.host) && settings.readToken === undefined) {
    say(`Note: listening on ${settings.host}: anyone who reaches this port can read the cluster's state; set ${READ_TOKEN_ENV} to require a token.`);
  }
}

/** Resolves on Ctrl-C or a termination signal. */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
    const stop = (signal: NodeJS.Signals): void => {
      for (const name of signals) process.off(name, stop);
      resolve(signal);
    };
    for (const name of signals) process.on(name, stop);
  });
}

export async function dashboardCommand(output: Output, access: ClusterAccess, options: DashboardCommandOptions): Promise<void> {
  const settings = dashboardSettings(options);
  const dashboard = await startDashboard({ access, host: settings.host, port: settings.port, controlToken: settings.controlToken, ...(settings.readToken ? { readToken: settings.readToken } : {}) });
  announceDashboard((line) => output.text(line), dashboard.url, settings);
  output.event({ event: 'dashboard_started', url: dashboard.url, ...(settings.tokenFromEnv ? {} : { token: settings.controlToken }) });
  output.text('Serving until Ctrl-C.');
  await untilStopSignal();
  await dashboard.close();
  output.result({ url: dashboard.url, stopped: true });
  output.text('Dashboard stopped.');
}
