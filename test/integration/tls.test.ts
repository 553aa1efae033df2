import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { ReshardError } from '../../src/core/errors.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { connectTo } from '../../src/plumbing/connectTo.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/router.js';
import { runCli, type CliResult } from '../support/cli.js';
import { startTestServers, type TestServers } from '../support/servers.js';

/*
 * Servers that accept TLS only (pg_hba.conf: hostssl), with a certificate for
 * "localhost" signed by a throwaway CA: a cluster built and rebalanced online
 * through the CLI with sslmode=verify-full in every URL, the subscription
 * between the nodes verifying too, and the refusals libpq would make.
 */

const SLOTS = 16;
const USERS = 1500;

let certificates: string;
let caFile: string;
let cluster: TestServers;

function openssl(...args: string[]): void {
  execFileSync('/usr/bin/openssl', args, { cwd: certificates, stdio: 'pipe' });
}

/** A CA and a server certificate whose only name is DNS:localhost (so 127.0.0.1 does not match it). */
function makeCertificates(): void {
  certificates = mkdtempSync(join(tmpdir(), 'reshard-tls-'));
  // The servers' subscriptions read the CA as the postgres OS user.
  chmodSync(certificates, 0o755);
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', '2', '-subj', '/CN=reshard test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(certificates, 'server.ext'), 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  caFile = join(certificates, 'ca.pem');
  chmodSync(caFile, 0o644);
}

const port = (index: number): number => cluster.servers[index]!.port;
const verifyFull = (): string => `sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`;
const nodeUrl = (index: number, query = verifyFull()): string => `postgres://postgres@localhost:${port(index)}/postgres?${query}`;
/** The catalog as key=value conninfo: the other accepted form. */
const catalogConninfo = (): string => `host=localhost port=${port(0)} dbname=postgres user=postgres sslmode=verify-full sslrootcert='${caFile}'`;

function tlsConnection(index: number, host = 'localhost', sslmode = 'verify-full'): ConnectionSettings {
  return { host, port: port(index), database: 'postgres', user: 'postgres', params: { sslmode, sslrootcert: caFile } };
}

async function cli(args: readonly string[]): Promise<{ result: CliResult; last: Record<string, any> }> {
  const result = await runCli(['--json', '--catalog', catalogConninfo(), ...args], {}, 180_000);
  const lines = result.stdout.split('\n').filter((line) => line.length > 0);
  return { result, last: lines.length ? JSON.parse(lines[lines.length - 1]!) as Record<string, any> : {} };
}

async function cliOk(args: readonly string[]): Promise<Record<string, any>> {
  const run = await cli(args);
  expect(run.result.code, `reshard ${args.join(' ')}: ${run.result.stderr}`).toBe(0);
  return run.last;
}

beforeAll(async () => {
  makeCertificates();
  cluster = await startTestServers(2, 'tls', undefined, 'stockLimits', { tls: { certFile: join(certificates, 'server.crt'), keyFile: join(certificates, 'server.key') } });
});

afterAll(async () => {
  await cluster?.stop();
  if (certificates) rmSync(certificates, { recursive: true, force: true });
});

describe('a TLS-only cluster', () => {
  it('refuses plaintext, and a verify-full connection to a name the certificate does not hold', async () => {
    const plaintext = await connectTo({ role: 'catalog', connection: tlsConnection(0, 'localhost', 'disable') }).catch((error: unknown) => error);
    expect(plaintext).toBeInstanceOf(ReshardError);
    expect((plaintext as ReshardError).message).toMatch(/no pg_hba\.conf entry .*no encryption/);

    const wrongName = await connectTo({ role: 'catalog', connection: tlsConnection(0, '127.0.0.1') }).catch((error: unknown) => error);
    expect(wrongName).toBeInstanceOf(ReshardError);
    expect((wrongName as ReshardError).message).toMatch(/127\.0\.0\.1 is not in the cert's list/);
    expect((wrongName as ReshardError).fix).toMatch(/certificate/);

    // The same address verifies the chain alone (verify-ca), and encrypts unverified with require and prefer;
    // allow tries plaintext first, is refused by pg_hba.conf, and falls back to TLS.
    for (const sslmode of ['verify-ca', 'require', 'prefer', 'allow']) {
      const client = await connectTo({ role: 'catalog', connection: tlsConnection(0, '127.0.0.1', sslmode) });
      const ssl = await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      expect(ssl.rows[0]!.ssl, sslmode).toBe(true);
      await client.end();
    }

    // A CA that did not sign the server's certificate fails verify-ca.
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=other CA');
    const strangerCa = await connectTo({ role: 'catalog', connection: { ...tlsConnection(0), params: { sslmode: 'verify-ca', sslrootcert: join(certificates, 'other.pem') } } })
      .catch((error: unknown) => error);
    expect(strangerCa).toBeInstanceOf(ReshardError);

    // Through the CLI, as an operator meets it.
    const refused = await runCli(['--catalog', `postgres://postgres@127.0.0.1:${port(0)}/postgres?${verifyFull()}`, 'node', 'list']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/is unreachable \(.*not in the cert's list.*Fix: .*certificate/);
    const missingCa = await runCli(['--catalog', `postgres://postgres@localhost:${port(0)}/postgres?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem`, 'node', 'list']);
    expect(missingCa.code).toBe(2);
    expect(missingCa.stderr).toMatch(/\/nonexistent\/ca\.pem does not exist/);
  });

  it('builds and rebalances online through the CLI with verify-full everywhere, the subscription included', async () => {
    await cliOk(['init', '--slots', String(SLOTS)]);
    const n1 = await cliOk(['node', 'add', 'n1', '--url', nodeUrl(0)]);
    expect(n1.params).toBe(`sslmode=verify-full sslrootcert=${caFile}`);
    for (const table of [
      ['users', '--key', 'id', '--columns', 'id bigint NOT NULL, name text NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id)'],
      ['orders', '--key', 'user_id', '--columns', 'user_id bigint NOT NULL, id bigint NOT NULL, amount numeric(12,2) NOT NULL, PRIMARY KEY (user_id, id)', '--colocate-with', 'users'],
    ]) await cliOk(['table', 'create', ...table]);
    const access = { catalog: tlsConnection(0), passwords: noPasswords };
    expect(await loadDemoRows(access, USERS)).toBe(2 * USERS);

    // A peer address whose CA path does not exist on the subscriber's machine: refused, naming the pair.
    const badPeer = await cli(['node', 'add', 'n2', '--url', nodeUrl(1), '--peer-url', nodeUrl(1, 'sslmode=verify-full&sslrootcert=/nonexistent/peer-ca.pem')]);
    expect(badPeer.result.code).toBe(3);
    expect(badPeer.result.stderr).toMatch(/node "n1" cannot reach node "n2" at postgres@localhost:[0-9]+\/postgres for replication \(.*\/nonexistent\/peer-ca\.pem.*\)\. Fix: .*--peer-url/);

    await cliOk(['node', 'add', 'n2', '--url', nodeUrl(1)]);
    const listed = await cliOk(['node', 'list']);
    expect(listed.nodes.map((node: Record<string, unknown>) => [node.name, node.params])).toEqual([
      ['n1', `sslmode=verify-full sslrootcert=${caFile}`], ['n2', `sslmode=verify-full sslrootcert=${caFile}`],
    ]);

    // While the CLI rebalances, watch the subscription from both ends.
    const watcherSource = await connectTo({ role: 'source watcher', connection: tlsConnection(0) });
    const watcherTarget = await connectTo({ role: 'target watcher', connection: tlsConnection(1) });
    const streamingSsl: boolean[] = [];
    const subscriptionConninfos = new Set<string>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const walsenders = await watcherSource.query<{ ssl: boolean }>(
          `SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.application_name LIKE 'reshard\\_m%' AND r.state = 'streaming'`);
        streamingSsl.push(...walsenders.rows.map((row) => row.ssl));
        const subscriptions = await watcherTarget.query<{ subconninfo: string }>(`SELECT subconninfo FROM pg_subscription WHERE subname LIKE 'reshard\\_m%'`);
        for (const row of subscriptions.rows) subscriptionConninfos.add(row.subconninfo);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    let rebalanced: Record<string, any> = {};
    try {
      rebalanced = await cliOk(['rebalance', '--mode', 'online']);
    } finally {
      watching = false;
      await watch;
      await watcherSource.end();
      await watcherTarget.end();
    }
    expect(rebalanced.state).toBe('completed');
    expect(rebalanced.plan.slots_moved).toBe(SLOTS / 2);
    expect(streamingSsl.length).toBeGreaterThan(0);
    expect(streamingSsl.every(Boolean)).toBe(true);
    expect(subscriptionConninfos.size).toBeGreaterThan(0);
    for (const conninfo of subscriptionConninfos) {
      expect(conninfo).toContain("host='localhost'");
      expect(conninfo).toContain("sslmode='verify-full'");
      expect(conninfo).toContain(`sslrootcert='${caFile}'`);
    }

    const verified = await cliOk(['verify']);
    expect(verified.verified).toBe(true);
    expect(verified.rows_total).toBe(2 * USERS);
    const after = await cliOk(['node', 'list']);
    expect(after.nodes.map((node: Record<string, number>) => node.slots)).toEqual([SLOTS / 2, SLOTS / 2]);
  });

  it('a router takes the catalog as a connection string and reaches the nodes over TLS', async () => {
    const router = await Router.connect({ catalog: catalogConninfo(), keyTypes: ['bigint'], name: 'tls test' });
    try {
      const rows = await router.query<{ count: string }>(7, 'SELECT count(*) FROM users WHERE id = $1', [7]);
      expect(rows.rows[0]!.count).toBe('1');
      const ssl = await router.eachNode(async (client) => (await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]!.ssl);
      expect([...ssl.values()]).toEqual([true, true]);
    } finally {
      await router.close();
    }
    const badUrl = await Router.connect({ catalog: 'postgres://postgres@localhost/postgres?sslmode=sometimes' }).catch((error: unknown) => error);
    expect((badUrl as ReshardError).message).toMatch(/sslmode "sometimes"/);
    // pg's own client is not used by reshard; check a plain one is refused too, as psql would be.
    const plain = new pg.Client({ host: '127.0.0.1', port: port(1), user: 'postgres', database: 'postgres', ssl: false });
    await expect(plain.connect()).rejects.toThrow(/no encryption/);
    await plain.end().catch(() => {});
  });
});
