import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNode } from '../admin/addNode.js';
import { adoptTable } from '../admin/adoptTable.js';
import { initCluster } from '../admin/initCluster.js';
import { verifyCluster } from '../admin/verifyCluster.js';
import { connectionUrl, describeConnection } from '../core/connection.js';
import { errorText } from '../core/errors.js';
import { percentile } from '../core/percentile.js';
import { serverOsUser } from '../local/osUser.js';
import { findPostgresBinaries } from '../local/postgresBinaries.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../local/localServer.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import { noPasswords } from '../plumbing/connectNode.js';
import { waitFor } from '../plumbing/waitFor.js';
import { AdoptingTable } from '../router/adoptingTable.js';
import { Router } from '../router/router.js';
import { startAdoptWriters, type AdoptWriterLog } from './adoptWriters.js';
import { loadPlainUsers } from './plainDemoData.js';
import type { DemoReporter, KeptDemo } from './runDemo.js';
import { verifyAdoptedKeys } from './verifyAdoptedKeys.js';

export interface AdoptDemoOptions {
  /** Nodes the table is adopted into (the demo's four by default). */
  nodes: number;
  rows: number;
  slots: number;
  /** Clients writing through `AdoptingTable` during the adoption (0: none). */
  clients: number;
  keep: boolean;
}

export interface AdoptDemoSummary {
  adopted: true;
  nodes: number;
  slots: number;
  rows_loaded: number;
  rows_adopted: number;
  rows_after: number;
  verified: boolean;
  writes_during: number;
  client_errors: number;
  client_error_samples: string[];
  missing: number;
  duplicated: number;
  unexpected: number;
  write_ms_p50: number;
  write_ms_p99: number;
  /** The longest a client waited for one insert: the cutover's pause as an application sees it. */
  write_ms_max: number;
  adopt_seconds: number;
  seconds: number;
  postgres: string;
  kept: boolean;
  kept_dir?: string;
  catalog_url?: string;
  source_url?: string;
}

/** How long the demo waits for the adoption to be recorded before its writers start. */
const ADOPTION_RECORDED_TIMEOUT_MS = 120_000;

/**
 * `reshard demo --adopt`: the other beginning. One ordinary PostgreSQL
 * server (`app`) holds a plain `users` table with data; a cluster of
 * `nodes` empty servers adopts it online (`reshard table adopt users --key
 * id`) while clients keep inserting through `AdoptingTable`; then every
 * loaded row and every acknowledged insert is checked to be on the cluster
 * exactly once, and the old table fenced.
 */
export async function runAdoptDemo(options: AdoptDemoOptions, reporter: DemoReporter): Promise<AdoptDemoSummary> {
  const started = Date.now();
  const binaries = findPostgresBinaries();
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-demo-'));
  const servers: LocalServer[] = [];
  let router: Router | undefined;
  let adopting: AdoptingTable | undefined;
  let writers: { stop: () => Promise<AdoptWriterLog> } | undefined;
  try {
    reporter.say(`Starting ${options.nodes + 1} PostgreSQL servers: one plain database (app) and ${options.nodes} nodes (${binaries.source} binaries in ${binaries.binDir}) …`);
    const names = ['app', ...Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`)];
    const startedServers = await Promise.allSettled(names.map((name) => startLocalServer({ name, baseDir, binaries })));
    for (const result of startedServers) if (result.status === 'fulfilled') servers.push(result.value);
    const failed = startedServers.find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const app = servers.find((server) => server.name === 'app')!;
    const nodes = servers.filter((server) => server.name !== 'app').sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    for (const server of [app, ...nodes]) reporter.say(`  ${server.name}: ${describeConnection(server.connection)}`);

    reporter.say(`Loading ${options.rows} users into a plain table on app (not sharded: what an application has before reshard) …`);
    const loaded = await loadPlainUsers(app.connection, options.rows, (rows) => reporter.loadProgress?.(rows, options.rows));

    const access: ClusterAccess = { catalog: nodes[0]!.connection, passwords: noPasswords };
    await initCluster(access, options.slots);
    for (const node of nodes) await addNode(access, { name: node.name, connection: node.connection });
    reporter.say(`A cluster of ${options.nodes} empty nodes with ${options.slots} slots; catalog on n1.`);
    reporter.say(`Adopting: reshard table adopt users --from ${connectionUrl(app.connection)} --key id`);

    router = options.clients > 0 ? await Router.connect({ catalog: access.catalog, name: 'reshard demo --adopt', keyTypes: ['bigint'], poolSizePerNode: options.clients }) : undefined;
    adopting = router ? await AdoptingTable.connect(router, { catalog: access.catalog, table: 'users', poolSize: options.clients }) : undefined;
    const adoptStarted = performance.now();
    const stepStarted = new Map<string, number>();
    const adoption = adoptTable(access, {
      name: 'users', from: [connectionUrl(app.connection)], keyColumn: 'id',
      emit: (event) => {
        if (event.action === 'begin') stepStarted.set(event.step, performance.now());
        if (event.action === 'done') reporter.say(`  ${event.step.padEnd(8)} done in ${((performance.now() - (stepStarted.get(event.step) ?? performance.now())) / 1000).toFixed(1)} s`);
        if (event.action === 'undo' || event.action === 'failed') reporter.say(`  ${event.step.padEnd(8)} ${event.action}`);
      },
    });
    if (adopting) {
      // The router knows the table once the adoption is recorded; from then on its calls go to the old table.
      const table = adopting;
      const recorded = await Promise.race([
        waitFor('the adoption recorded in the catalog', async () => (table.state !== 'none' ? true : undefined), { timeoutMs: ADOPTION_RECORDED_TIMEOUT_MS, pollMs: 5, fix: 'see the error of the adoption' }).then(() => true),
        adoption.then(() => false, () => false),
      ]);
      if (recorded) {
        writers = startAdoptWriters(table, options.clients, 5);
        reporter.say(`${options.clients} clients insert users through AdoptingTable while it runs (the old table until the switch, held through the cutover, then by slot).`);
      }
    }
    const result = await adoption.catch((error: unknown) => {
      reporter.say(`The adoption failed: ${errorText(error)}`);
      return undefined;
    });
    const adoptSeconds = (performance.now() - adoptStarted) / 1000;
    // Writers go on a moment after the switch: their calls now go by slot.
    if (writers && result) await new Promise((resolve) => setTimeout(resolve, 500));
    const log = await writers?.stop();
    writers = undefined;
    const latencies = log?.latenciesMs ?? [];
    if (result) reporter.say(`Adopted ${result.rows} rows in ${adoptSeconds.toFixed(1)} s; the old table is kept fenced on app as users until \`reshard table forget-source users\`.`);
    if (log) {
      reporter.say(`Live writes: ${log.acknowledged.length} acknowledged inserts, ${log.errors.length} client errors; per-insert latency p50 ${percentile(latencies, 0.5).toFixed(0)} ms, p99 ${percentile(latencies, 0.99).toFixed(0)} ms, max ${latencies.length ? Math.max(...latencies).toFixed(0) : 0} ms (the cutover's pause).`);
      for (const error of log.errors.slice(0, 5)) reporter.say(`  client error: ${error}`);
    }

    const after = result ? await verifyCluster(access) : undefined;
    const keys = await verifyAdoptedKeys(access, loaded, log?.acknowledged ?? [], log?.uncertain ?? []);
    const rowsAfter = after?.rowsByTable['users'] ?? 0;
    const verified = result !== undefined && after!.ok && keys.missing === 0 && keys.duplicated === 0 && keys.unexpected === 0 && (log?.errors.length ?? 0) === 0;
    reporter.say(`Verified: ${verified ? 'yes' : 'NO'} — users: ${rowsAfter} rows on ${options.nodes} nodes = ${loaded} loaded + ${log?.acknowledged.length ?? 0} written during the adoption; missing ${keys.missing}, duplicated ${keys.duplicated}, unexpected ${keys.unexpected}.`);
    for (const problem of after?.problems ?? []) reporter.say(`  problem: ${problem}`);

    return {
      adopted: true,
      nodes: options.nodes,
      slots: options.slots,
      rows_loaded: loaded,
      rows_adopted: result?.rows ?? 0,
      rows_after: rowsAfter,
      verified,
      writes_during: log?.acknowledged.length ?? 0,
      client_errors: log?.errors.length ?? 0,
      client_error_samples: log?.errors.slice(0, 5) ?? [],
      missing: keys.missing,
      duplicated: keys.duplicated,
      unexpected: keys.unexpected,
      write_ms_p50: percentile(latencies, 0.5),
      write_ms_p99: percentile(latencies, 0.99),
      write_ms_max: latencies.length ? Math.max(...latencies) : 0,
      adopt_seconds: adoptSeconds,
      seconds: (Date.now() - started) / 1000,
      postgres: binaries.source,
      kept: options.keep,
      ...(options.keep ? { kept_dir: baseDir, catalog_url: connectionUrl(nodes[0]!.connection), source_url: connectionUrl(app.connection) } : {}),
    };
  } finally {
    await writers?.stop().catch(() => {});
    await adopting?.close().catch(() => {});
    await router?.close().catch(() => {});
    if (options.keep) {
      for (const server of servers) server.keepAfterExit();
      const osUser = serverOsUser();
      const catalog = servers.find((server) => server.name === 'n1');
      const kept: KeptDemo = {
        baseDir,
        catalogUrl: catalog ? connectionUrl(catalog.connection) : undefined,
        stopCommands: servers.map((server) => `${osUser.switched ? `runuser -u ${osUser.name} -- ` : ''}${join(binaries.binDir, 'pg_ctl')} stop -D ${server.dataDir}`),
      };
      if (reporter.kept) reporter.kept(kept);
      else reporter.say(`Servers kept running in ${baseDir}; catalog: ${kept.catalogUrl ?? '-'}. Stop them with: ${kept.stopCommands.join('; ')}`);
    } else {
      await Promise.allSettled(servers.map((server) => server.stop('fast')));
      removeServerDirectory(baseDir);
    }
  }
}
