import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ConnectionSettings } from '../core/connection.js';
import { sslModeOf } from '../core/conninfo.js';
import { badInput } from '../core/errors.js';

/** What node-postgres's `ssl` option takes: false for plaintext, else options for `tls.connect`. */
export type SslSetting = false | tls.ConnectionOptions;

/**
 * The TLS settings to try, in order, for a connection's sslmode, with
 * libpq's rules: `disable` plaintext; `allow` plaintext, then TLS;
 * `prefer` TLS, then plaintext; `require` TLS, verifying the chain only when
 * a root certificate file exists (libpq's rule); `verify-ca` the chain;
 * `verify-full` the chain and the host name. Files are read from the given
 * paths, else libpq's defaults in ~/.postgresql. Reads files: call it at
 * connect time, on the machine that connects.
 */
export function sslAttempts(connection: ConnectionSettings): SslSetting[] {
  const mode = sslModeOf(connection);
  if (mode === 'disable') return [false];
  const encrypted = tlsOptions(connection);
  if (mode === 'allow') return [false, encrypted];
  if (mode === 'prefer') return [encrypted, false];
  return [encrypted];
}

const POSTGRESQL_DIRECTORY = (): string => join(homedir(), '.postgresql');

function tlsOptions(connection: ConnectionSettings): tls.ConnectionOptions {
  const mode = sslModeOf(connection);
  const params = connection.params ?? {};
  const verifying = mode === 'verify-ca' || mode === 'verify-full';
  const rootCertPath = params['sslrootcert'] ?? join(POSTGRESQL_DIRECTORY(), 'root.crt');
  // libpq 16's sslrootcert=system: the operating system's trusted roots (Node's defaults), always with host name checks.
  const systemRoots = rootCertPath === 'system';
  const rootCertExists = systemRoots || existsSync(rootCertPath);
  if (verifying && !rootCertExists) {
    throw badInput(`sslmode=${mode} for ${connection.host} needs a root certificate, and ${rootCertPath} does not exist`,
      'pass sslrootcert=/path/to/ca.pem (a path on the machine that connects), or use sslmode=require');
  }
  const options: tls.ConnectionOptions = { rejectUnauthorized: rootCertExists };
  if (rootCertExists && !systemRoots) options.ca = readTlsFile(rootCertPath, 'sslrootcert', connection);
  if (rootCertExists) {
    // node-postgres checks the name it passed as servername, which it omits for an IP address
    // (Node then checks "localhost"): check the host the connection names, as libpq does.
    options.checkServerIdentity = mode === 'verify-full' || systemRoots
      ? (_servername, certificate) => tls.checkServerIdentity(connection.host, certificate)
      : () => undefined;
  }
  const certPath = params['sslcert'] ?? join(POSTGRESQL_DIRECTORY(), 'postgresql.crt');
  // As libpq: a missing client certificate means none is sent; a certificate without its key is an error.
  if (existsSync(certPath)) {
    const keyPath = params['sslkey'] ?? join(POSTGRESQL_DIRECTORY(), 'postgresql.key');
    options.cert = readTlsFile(certPath, 'sslcert', connection);
    options.key = readTlsFile(keyPath, 'sslkey', connection);
  }
  return options;
}

function readTlsFile(path: string, param: string, connection: ConnectionSettings): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw badInput(`${param} ${path} for ${connection.host} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      `give ${param} a readable file on the machine that connects`);
  }
}
