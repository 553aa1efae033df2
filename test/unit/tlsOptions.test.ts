import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { ReshardError } from '../../src/core/errors.js';
import { sslAttempts } from '../../src/plumbing/tlsOptions.js';

/** libpq's sslmode rules as node-postgres `ssl` settings; files in a fake HOME. */
let home: string;
let savedHome: string | undefined;
const connection = (params: Record<string, string> = {}): ConnectionSettings => ({ host: 'db1', port: 5432, database: 'app', user: 'u', params });
const certificateFor = (name: string): PeerCertificate => ({ subject: { CN: name }, subjectaltname: `DNS:${name}` }) as unknown as PeerCertificate;

beforeAll(() => {
  savedHome = process.env['HOME'];
  home = mkdtempSync(join(tmpdir(), 'reshard-home-'));
  process.env['HOME'] = home;
  writeFileSync(join(home, 'ca.pem'), 'CA');
});
afterAll(() => {
  process.env['HOME'] = savedHome;
  rmSync(home, { recursive: true, force: true });
});

describe('sslAttempts', () => {
  it('orders plaintext and TLS as libpq does, prefer by default', () => {
    expect(sslAttempts(connection({ sslmode: 'disable' }))).toEqual([false]);
    expect(sslAttempts(connection({ sslmode: 'allow' }))).toEqual([false, { rejectUnauthorized: false }]);
    expect(sslAttempts(connection())).toEqual([{ rejectUnauthorized: false }, false]);
    expect(sslAttempts(connection({ sslmode: 'require' }))).toEqual([{ rejectUnauthorized: false }]);
  });

  it('verifies the chain under require once a root certificate exists, the name only under verify-full', () => {
    const [required] = sslAttempts(connection({ sslmode: 'require', sslrootcert: join(home, 'ca.pem') }));
    expect(required).toMatchObject({ rejectUnauthorized: true, ca: Buffer.from('CA') });
    expect((required as { checkServerIdentity: (name: string, cert: PeerCertificate) => Error | undefined }).checkServerIdentity('db1', certificateFor('elsewhere'))).toBeUndefined();
    const [full] = sslAttempts(connection({ sslmode: 'verify-full', sslrootcert: join(home, 'ca.pem') })) as [{ checkServerIdentity: (name: string, cert: PeerCertificate) => Error | undefined }];
    expect(full.checkServerIdentity('db1', certificateFor('db1'))).toBeUndefined();
    expect(full.checkServerIdentity('db1', certificateFor('elsewhere'))).toBeInstanceOf(Error);
    // The default file in ~/.postgresql counts as given.
    mkdirSync(join(home, '.postgresql'));
    writeFileSync(join(home, '.postgresql', 'root.crt'), 'ROOT');
    expect(sslAttempts(connection({ sslmode: 'verify-ca' }))[0]).toMatchObject({ rejectUnauthorized: true, ca: Buffer.from('ROOT') });
    rmSync(join(home, '.postgresql'), { recursive: true });
  });

  it('refuses verify-ca/verify-full without a root certificate, and a client certificate without its key', () => {
    for (const sslmode of ['verify-ca', 'verify-full']) {
      expect(() => sslAttempts(connection({ sslmode }))).toThrow(ReshardError);
      expect(() => sslAttempts(connection({ sslmode }))).toThrow(/root\.crt does not exist/);
    }
    writeFileSync(join(home, 'client.crt'), 'CERT');
    expect(() => sslAttempts(connection({ sslmode: 'require', sslcert: join(home, 'client.crt'), sslkey: join(home, 'missing.key') }))).toThrow(/sslkey .*missing\.key/);
    writeFileSync(join(home, 'client.key'), 'KEY');
    expect(sslAttempts(connection({ sslmode: 'require', sslcert: join(home, 'client.crt'), sslkey: join(home, 'client.key') }))[0])
      .toMatchObject({ cert: Buffer.from('CERT'), key: Buffer.from('KEY') });
  });
});
