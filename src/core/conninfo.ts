import type { ConnectionSettings } from './connection.js';
import { badInput } from './errors.js';

/**
 * libpq's connection strings, as reshard accepts them: a URL
 * (`postgres://user:pass@host:port/db?sslmode=require`) or key=value pairs
 * (`host=h port=5432 dbname=app user=u sslmode=require`), with a service
 * from pg_service.conf and libpq's environment variables filling what the
 * string leaves out — in libpq's order: the string, then the service, then
 * the environment, then reshard's defaults. Pure: files and the environment
 * come in through `ConninfoSources`.
 */

/** libpq parameters reshard honours besides the address and the password. */
export const LIBPQ_PARAM_NAMES = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'application_name', 'connect_timeout'] as const;
export type LibpqParamName = (typeof LIBPQ_PARAM_NAMES)[number];

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** libpq's default when nothing sets sslmode. */
export const SSL_MODE_DEFAULT: SslMode = 'prefer';

const ADDRESS_KEYS = ['host', 'port', 'dbname', 'user', 'password'] as const;
const ACCEPTED_KEYS = new Set<string>([...ADDRESS_KEYS, ...LIBPQ_PARAM_NAMES, 'service']);

/** The environment variable libpq reads for each parameter (PGPASSWORD is left to the driver and ~/.pgpass). */
const ENVIRONMENT_VARIABLE_BY_KEY: Readonly<Record<string, string>> = {
  host: 'PGHOST',
  port: 'PGPORT',
  dbname: 'PGDATABASE',
  user: 'PGUSER',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
};

/** Where a connection string's missing parts come from: the process environment and pg_service.conf files. */
export interface ConninfoSources {
  env: Readonly<Record<string, string | undefined>>;
  homeDir: string;
  /** The file's text, or undefined when it does not exist. */
  readFile(path: string): string | undefined;
}

/** No environment and no files: the string alone, then reshard's defaults. */
export const NO_CONNINFO_SOURCES: ConninfoSources = { env: {}, homeDir: '/nonexistent', readFile: () => undefined };

/** reshard's defaults for the address (libpq's would be a Unix socket and the OS user). */
const ADDRESS_DEFAULTS = { host: '127.0.0.1', port: '5432', dbname: 'postgres', user: 'postgres' } as const;

/**
 * Parses a URL or a key=value connection string. `what` names the string in
 * errors (`--url`, `RESHARD_CATALOG`). Throws one bad-input error naming
 * the first problem: an unknown parameter, a bad sslmode or port, a missing
 * service. A password is kept in `password`, never in `params`.
 */
export function parseConnectionString(text: string, what: string, sources: ConninfoSources = NO_CONNINFO_SOURCES): ConnectionSettings {
  const trimmed = text.trim();
  const given = /^postgres(ql)?:\/\//i.test(trimmed) ? parseUrlPairs(trimmed, what) : parseKeywordPairs(trimmed, what);
  for (const key of given.keys()) {
    if (!ACCEPTED_KEYS.has(key)) {
      throw badInput(`${what} has the parameter "${key}", which reshard does not support`,
        `remove it; reshard accepts ${[...ADDRESS_KEYS, ...LIBPQ_PARAM_NAMES, 'service'].join(', ')}`);
    }
  }
  const values = new Map(given);
  const service = values.get('service') ?? sources.env['PGSERVICE'];
  values.delete('service');
  if (service !== undefined && service !== '') {
    for (const [key, value] of readService(service, what, sources)) if (!values.has(key)) values.set(key, value);
  }
  for (const [key, variable] of Object.entries(ENVIRONMENT_VARIABLE_BY_KEY)) {
    const fromEnvironment = sources.env[variable];
    if (!values.has(key) && fromEnvironment !== undefined && fromEnvironment !== '') values.set(key, fromEnvironment);
  }
  return settingsFromValues(values, what);
}

function settingsFromValues(values: ReadonlyMap<string, string>, what: string): ConnectionSettings {
  const value = (key: keyof typeof ADDRESS_DEFAULTS): string => {
    const given = values.get(key);
    return given === undefined || given === '' ? ADDRESS_DEFAULTS[key] : given;
  };
  const host = value('host');
  if (host.includes(',')) throw badInput(`${what} names several hosts (${host})`, 'give one host per node');
  if (host.startsWith('/')) throw badInput(`${what} names a Unix socket directory (${host})`, 'give a host name or address: nodes must reach each other over TCP');
  const portText = value('port');
  const port = Number(portText);
  if (!/^[0-9]+$/.test(portText) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw badInput(`${what} has port "${portText}", which is not a port`, 'give a number between 1 and 65535');
  }
  const params: Record<string, string> = {};
  for (const name of LIBPQ_PARAM_NAMES) {
    const given = values.get(name);
    if (given !== undefined && given !== '') params[name] = given;
  }
  assertParamsValid(params, what);
  const password = values.get('password');
  return {
    host,
    port,
    database: value('dbname'),
    user: value('user'),
    ...(password !== undefined && password !== '' ? { password } : {}),
    ...(Object.keys(params).length > 0 ? { params } : {}),
  };
}

/** Throws on a parameter libpq would refuse: an unknown sslmode, a connect_timeout that is not whole seconds. */
export function assertParamsValid(params: Readonly<Record<string, string>>, what: string): void {
  for (const key of Object.keys(params)) {
    if (!(LIBPQ_PARAM_NAMES as readonly string[]).includes(key)) {
      throw badInput(`${what} has the parameter "${key}", which reshard does not support`, `remove it; reshard accepts ${LIBPQ_PARAM_NAMES.join(', ')}`);
    }
  }
  const sslmode = params['sslmode'];
  if (sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw badInput(`${what} has sslmode "${sslmode}", which is not one of libpq's`, `use one of ${SSL_MODES.join(', ')}`);
  }
  const timeout = params['connect_timeout'];
  if (timeout !== undefined && !/^[0-9]+$/.test(timeout)) {
    throw badInput(`${what} has connect_timeout "${timeout}", which is not whole seconds`, 'give a number of seconds, e.g. connect_timeout=10');
  }
}

/** The sslmode a connection uses: its own, else libpq's default. */
export function sslModeOf(connection: ConnectionSettings): SslMode {
  return (connection.params?.['sslmode'] as SslMode | undefined) ?? SSL_MODE_DEFAULT;
}

// ---------------------------------------------------------------- URL form

function parseUrlPairs(text: string, what: string): Map<string, string> {
  // Split by hand: WHATWG URL rejects libpq's forms (several hosts, an empty host with a query) and normalises hosts.
  const match = /^postgres(?:ql)?:\/\/([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(text);
  if (!match) throw badInput(`${what} is not a valid postgres:// URL`, 'write it as postgres://user@host:port/database?sslmode=require');
  const [, authority = '', path, query] = match;
  const pairs = new Map<string, string>();
  const at = authority.lastIndexOf('@');
  const credentials = at >= 0 ? authority.slice(0, at) : undefined;
  const hostPort = at >= 0 ? authority.slice(at + 1) : authority;
  if (credentials !== undefined) {
    const colon = credentials.indexOf(':');
    const user = decode(colon >= 0 ? credentials.slice(0, colon) : credentials, what);
    if (user !== '') pairs.set('user', user);
    if (colon >= 0) pairs.set('password', decode(credentials.slice(colon + 1), what, true));
  }
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(hostPort);
  const [host, port] = bracketed
    ? [bracketed[1]!, bracketed[2]]
    : hostPort.includes(',') ? [hostPort, undefined] : splitHostPort(hostPort);
  if (host !== '') pairs.set('host', decode(host, what));
  if (port !== undefined && port !== '') pairs.set('port', decode(port, what));
  if (path !== undefined && path !== '') pairs.set('dbname', decode(path, what));
  for (const part of (query ?? '').split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    if (equals < 0) throw badInput(`${what} has the query parameter "${decode(part, what)}" without a value`, 'write parameters as name=value, e.g. ?sslmode=require');
    const key = decode(part.slice(0, equals), what);
    const value = decode(part.slice(equals + 1), what, key === 'password');
    // libpq reads the JDBC spelling ssl=true as sslmode=require.
    if (key === 'ssl' && value === 'true') pairs.set('sslmode', 'require');
    else pairs.set(key, value);
  }
  return pairs;
}

function splitHostPort(hostPort: string): [string, string | undefined] {
  const colon = hostPort.lastIndexOf(':');
  return colon >= 0 ? [hostPort.slice(0, colon), hostPort.slice(colon + 1)] : [hostPort, undefined];
}

function decode(text: string, what: string, secret = false): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw badInput(`${what} has a broken %-escape in ${secret ? 'its password' : `"${text}"`}`, 'escape special characters as %XX');
  }
}

// ---------------------------------------------------------------- key=value form

/**
 * libpq's keyword/value grammar: `key = value` pairs separated by spaces; a
 * value is a run of non-space characters or a single-quoted string, and in
 * both a backslash takes the next character literally.
 */
function parseKeywordPairs(text: string, what: string): Map<string, string> {
  const pairs = new Map<string, string>();
  let index = 0;
  const isSpace = (char: string | undefined): boolean => char !== undefined && /\s/.test(char);
  while (index < text.length) {
    while (isSpace(text[index])) index++;
    if (index >= text.length) break;
    const keyStart = index;
    while (index < text.length && text[index] !== '=' && !isSpace(text[index])) index++;
    const key = text.slice(keyStart, index);
    while (isSpace(text[index])) index++;
    if (text[index] !== '=') {
      throw badInput(`${what} is neither a postgres:// URL nor key=value pairs ("${key}" has no "=")`,
        'write postgres://user@host:port/db?sslmode=require or host=h port=5432 dbname=db user=u sslmode=require');
    }
    index++;
    while (isSpace(text[index])) index++;
    let value = '';
    if (text[index] === "'") {
      index++;
      for (;;) {
        if (index >= text.length) throw badInput(`${what} has an unterminated quoted value for "${key}"`, "close the value with a single quote; write \\' for a quote inside it");
        const char = text[index]!;
        if (char === '\\' && index + 1 < text.length) {
          value += text[index + 1];
          index += 2;
        } else if (char === "'") {
          index++;
          break;
        } else {
          value += char;
          index++;
        }
      }
    } else {
      while (index < text.length && !isSpace(text[index])) {
        if (text[index] === '\\' && index + 1 < text.length) index++;
        value += text[index];
        index++;
      }
    }
    if (key === '') throw badInput(`${what} has a value without a parameter name`, 'write parameters as name=value');
    pairs.set(key, value);
  }
  return pairs;
}

/** A value quoted for a key=value connection string: always single-quoted, with `\` and `'` escaped. */
export function quoteConninfoValue(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/**
 * The key=value connection string of `connection`: address, password (when
 * it has one) and the given params, in a fixed order. Parsing it gives the
 * same settings back.
 */
export function formatConninfo(connection: ConnectionSettings, options: { omitParams?: readonly LibpqParamName[] } = {}): string {
  const parts = [
    `host=${quoteConninfoValue(connection.host)}`,
    `port=${connection.port}`,
    `dbname=${quoteConninfoValue(connection.database)}`,
    `user=${quoteConninfoValue(connection.user)}`,
    ...(connection.password !== undefined ? [`password=${quoteConninfoValue(connection.password)}`] : []),
  ];
  for (const name of LIBPQ_PARAM_NAMES) {
    const value = connection.params?.[name];
    if (value !== undefined && !(options.omitParams ?? []).includes(name)) parts.push(`${name}=${quoteConninfoValue(value)}`);
  }
  return parts.join(' ');
}

/** The params as `key=value` words, safe to print (never a password). */
export function describeParams(params: Readonly<Record<string, string>> | undefined): string {
  return LIBPQ_PARAM_NAMES.filter((name) => params?.[name] !== undefined).map((name) => `${name}=${params![name]}`).join(' ');
}

// ---------------------------------------------------------------- pg_service.conf

/**
 * The parameters of `service`: the per-user file (PGSERVICEFILE, else
 * ~/.pg_service.conf) first, then PGSYSCONFDIR/pg_service.conf — the first
 * file that defines the service wins, as in libpq.
 */
function readService(service: string, what: string, sources: ConninfoSources): Map<string, string> {
  const files = [
    sources.env['PGSERVICEFILE'] ?? `${sources.homeDir}/.pg_service.conf`,
    ...(sources.env['PGSYSCONFDIR'] ? [`${sources.env['PGSYSCONFDIR']}/pg_service.conf`] : []),
  ];
  for (const file of files) {
    const text = sources.readFile(file);
    if (text === undefined) continue;
    const found = serviceSection(text, service, file);
    if (found) return found;
  }
  throw badInput(`${what} names the service "${service}", which no service file defines (looked in ${files.join(', ')})`,
    'add a [service] section to ~/.pg_service.conf (or PGSERVICEFILE), or write the connection out');
}

function serviceSection(text: string, service: string, file: string): Map<string, string> | undefined {
  let current: string | undefined;
  let found: Map<string, string> | undefined;
  for (const [lineIndex, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      if (found) return found;
      current = section[1]!.trim();
      if (current === service) found = new Map();
      continue;
    }
    if (current !== service || !found) continue;
    const equals = line.indexOf('=');
    if (equals < 0) throw badInput(`service file ${file} line ${lineIndex + 1} has no "="`, 'write each setting as name=value');
    const key = line.slice(0, equals).trim();
    if (key === 'service') throw badInput(`service file ${file} nests a service in "${service}"`, 'remove the service= line');
    if (!ACCEPTED_KEYS.has(key)) {
      throw badInput(`service "${service}" in ${file} has the parameter "${key}", which reshard does not support`,
        `remove it; reshard accepts ${[...ADDRESS_KEYS, ...LIBPQ_PARAM_NAMES].join(', ')}`);
    }
    found.set(key, line.slice(equals + 1).trim());
  }
  return found;
}
