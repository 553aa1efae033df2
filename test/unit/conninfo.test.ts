import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { formatConninfo, parseConnectionString, quoteConninfoValue, SSL_MODES, type ConninfoSources } from '../../src/core/conninfo.js';
import { ReshardError } from '../../src/core/errors.js';

const text = fc.string({ minLength: 1, maxLength: 20 });
/** Values libpq and reshard both accept for each part (a host has no comma and does not start with "/"). */
const connectionArbitrary: fc.Arbitrary<ConnectionSettings> = fc.record({
  host: text.filter((value) => !value.includes(',') && !value.startsWith('/')),
  port: fc.integer({ min: 1, max: 65535 }),
  database: text,
  user: text,
  password: fc.option(text, { nil: undefined }),
  params: fc.option(fc.record({
    sslmode: fc.constantFrom(...SSL_MODES),
    sslrootcert: text,
    sslcert: text,
    sslkey: text,
    application_name: text,
    connect_timeout: fc.integer({ min: 0, max: 3600 }).map(String),
  }, { requiredKeys: [] }).filter((params) => Object.keys(params).length > 0), { nil: undefined }),
}, { requiredKeys: ['host', 'port', 'database', 'user'] });

/** The settings as the parser returns them: no undefined fields. */
function normalised(connection: ConnectionSettings): ConnectionSettings {
  return JSON.parse(JSON.stringify(connection)) as ConnectionSettings;
}

function sources(env: Record<string, string>, files: Record<string, string> = {}): ConninfoSources {
  return { env, homeDir: '/home/op', readFile: (path) => files[path] };
}

function errorOf(work: () => unknown): ReshardError {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(ReshardError);
    return error as ReshardError;
  }
  throw new Error('expected an error');
}

describe('key=value connection strings', () => {
  it('round-trips any settings through formatConninfo', () => {
    fc.assert(fc.property(connectionArbitrary, (connection) => {
      expect(parseConnectionString(formatConninfo(connection), 'test')).toEqual(normalised(connection));
    }), { numRuns: 500 });
  });

  it('reads a quoted value back exactly, whatever its characters', () => {
    fc.assert(fc.property(fc.string({ maxLength: 30 }).filter((value) => value !== ''), (value) => {
      expect(parseConnectionString(`host=h user=${quoteConninfoValue(value)}`, 't').user).toBe(value);
    }));
  });

  it('reads libpq\'s forms: spaces around "=", unquoted values, backslash escapes', () => {
    expect(parseConnectionString("host = db1  port=6432 dbname=app user=u sslmode=verify-full sslrootcert='/etc/ca dir/ca.pem' password=p\\ w", 't')).toEqual({
      host: 'db1', port: 6432, database: 'app', user: 'u', password: 'p w',
      params: { sslmode: 'verify-full', sslrootcert: '/etc/ca dir/ca.pem' },
    });
  });
});

describe('URLs', () => {
  it('round-trips settings written as a URL with query parameters', () => {
    fc.assert(fc.property(connectionArbitrary, (connection) => {
      const e = encodeURIComponent;
      const credentials = `${e(connection.user)}${connection.password !== undefined ? `:${e(connection.password)}` : ''}`;
      const query = Object.entries(connection.params ?? {}).map(([key, value]) => `${key}=${e(value)}`).join('&');
      const url = `postgres://${credentials}@${e(connection.host)}:${connection.port}/${e(connection.database)}${query ? `?${query}` : ''}`;
      expect(parseConnectionString(url, 'test')).toEqual(normalised(connection));
    }), { numRuns: 500 });
  });

  it('takes the issue\'s example', () => {
    expect(parseConnectionString('postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=/path/ca.pem', '--url')).toEqual({
      host: 'h', port: 5432, database: 'db', user: 'u', params: { sslmode: 'verify-full', sslrootcert: '/path/ca.pem' },
    });
    expect(parseConnectionString('postgresql://[::1]:6000/x?ssl=true', '--url')).toMatchObject({ host: '::1', port: 6000, params: { sslmode: 'require' } });
    expect(parseConnectionString('postgres://db', '--url')).toEqual({ host: 'db', port: 5432, database: 'postgres', user: 'postgres' });
  });
});

describe('refusals', () => {
  it.each([
    ['postgres://u@h/db?sslmod=require', /parameter "sslmod".*does not support/],
    ['host=h keepalives=1', /parameter "keepalives"/],
    ['postgres://u@h/db?sslmode=on', /sslmode "on"/],
    ['host=h connect_timeout=ten', /connect_timeout "ten"/],
    ['postgres://u@h:99999/db', /port "99999"/],
    ['postgres://u@h1,h2/db', /several hosts/],
    ['host=/var/run/postgresql', /Unix socket/],
    ["host='h", /unterminated/],
    ['just-a-name', /neither a postgres:\/\/ URL nor key=value/],
  ])('%s', (input, expected) => {
    const error = errorOf(() => parseConnectionString(input, '--url'));
    expect(error.message).toMatch(expected);
    expect(error.message).toContain('--url');
    expect(error.code).toBe('bad_input');
  });

  it('never shows a password in an error', () => {
    const error = errorOf(() => parseConnectionString('postgres://u:s3cret@h/db?bogus=1', '--url'));
    expect(error.line()).not.toContain('s3cret');
    const conninfoError = errorOf(() => parseConnectionString('password=s3cret bogus=1', '--url'));
    expect(conninfoError.line()).not.toContain('s3cret');
    for (const url of ['postgres://u:s3cret%zz@h/db', 'postgres://u@h/db?password=s3cret%zz']) {
      const escapeError = errorOf(() => parseConnectionString(url, '--url'));
      expect(escapeError.message).toMatch(/broken %-escape in its password/);
      expect(escapeError.line()).not.toContain('s3cret');
    }
  });
});

describe('environment and services, in libpq\'s order', () => {
  it('fills what the string leaves out from PG* variables, never overriding the string', () => {
    const env = { PGSSLMODE: 'require', PGSSLROOTCERT: '/ca.pem', PGAPPNAME: 'app', PGCONNECT_TIMEOUT: '7', PGHOST: 'envhost', PGUSER: 'envuser' };
    expect(parseConnectionString('host=h sslmode=verify-ca', 't', sources(env))).toEqual({
      host: 'h', port: 5432, database: 'postgres', user: 'envuser',
      params: { sslmode: 'verify-ca', sslrootcert: '/ca.pem', application_name: 'app', connect_timeout: '7' },
    });
    expect(errorOf(() => parseConnectionString('host=h', 't', sources({ PGSSLMODE: 'bogus' }))).message).toMatch(/sslmode "bogus"/);
  });

  it('reads a service from PGSERVICEFILE, ~/.pg_service.conf, then PGSYSCONFDIR; the string wins over it, it wins over the environment', () => {
    const files = {
      '/home/op/.pg_service.conf': '# mine\n[other]\nhost=x\n\n[main]\nhost=db.example\nport = 6432\ndbname=app\nsslmode=verify-full\n',
      '/etc/pg/pg_service.conf': '[sys]\nhost=sysdb\nuser=sysuser\n',
      '/custom/services': '[main]\nhost=custom\n',
    };
    expect(parseConnectionString('service=main user=me', 't', sources({ PGSSLMODE: 'disable', PGPORT: '1' }, files))).toEqual({
      host: 'db.example', port: 6432, database: 'app', user: 'me', params: { sslmode: 'verify-full' },
    });
    expect(parseConnectionString('postgres://h2/x', 't', sources({ PGSERVICE: 'main' }, files))).toMatchObject({ host: 'h2', port: 6432, database: 'x' });
    expect(parseConnectionString('service=sys', 't', sources({ PGSYSCONFDIR: '/etc/pg' }, files))).toMatchObject({ host: 'sysdb', user: 'sysuser' });
    expect(parseConnectionString('service=main', 't', sources({ PGSERVICEFILE: '/custom/services' }, files)).host).toBe('custom');
    expect(errorOf(() => parseConnectionString('service=nope', 't', sources({}, files))).message).toMatch(/service "nope"/);
    expect(errorOf(() => parseConnectionString('service=bad', 't', sources({}, { '/home/op/.pg_service.conf': '[bad]\ngssencmode=disable\n' }))).message)
      .toMatch(/parameter "gssencmode"/);
  });
});
