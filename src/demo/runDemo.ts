import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNode } from '../admin/addNode.js';
import { createShardedTable } from '../admin/createShardedTable.js';
import { initCluster } from '../admin/initCluster.js';
import { MOVE_CONCURRENCY_MAX_DEFAULT, prepareRebalance, runPreparedRebalance, type MoverModeOption } from '../admin/rebalance.js';
import { verifyCluster } from '../admin/verifyCluster.js';
import { formatBytes } from '../core/bytes.js';
import { connectionUrl, describeConnection } from '../core/connection.js';
import { serverOsUser } from '../local/osUser.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { findPostgresBinaries } from '../local/postgresBinaries.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../local/localServer.js';
import { noPasswords } from '../plumbing/connectNode.js';
import { formatComparison } from '../planner/index.js';
import { DEMO_TABLES, loadDemoRows } from './demoData.js';
import { verifyKeysExactlyOnce } from './verifyExactlyOnce.js';
import { CHECK_TABLES } from '../checker/checkTables.js';
import { MoveTimeline } from '../checker/moveTimeline.js';
import { verifyWorkload } from '../checker/verifyWorkload.js';
import { Workload } from '../checker/workload.js';
import { percentile } from '../core/percentile.js';
import { Router } from '../router/router.js';
import { startDashboard, type RunningDashboard } from '../dashboard/server.js';
import { sleep } from '../plumbing/waitFor.js';
import { splitAllSlots, type SplitAllResult } from '../admin/splitAllSlots.js';

export interface DemoOptions {
  nodes: number;
  add: number;
  rows: number;
  slots: number;
  keep: boolean;
  mode: MoverModeOption;
  /** Clients writing through a router during the rebalance (0: none). */
  clients: number;
  concurrency?: number;
  /** Serve the dashboard during the demo. */
  dashboard?: DemoDashboardOptions;
  /** The gradual expansion: split every slot (`split --all`, under the live writes) before the rebalance onto the added nodes. */
  split?: boolean;
}

export interface DemoDashboardOptions {
  host: string;
  port: number;
  controlToken: string;
  readToken?: string;
  /** Prints where the dashboard is (and the token) once it listens. */
  announce(url: string): void;
  /** Seconds before the rebalance starts, to open the page and read the plan. */
  headStartSeconds: number;
  /** Seconds the dashboard stays up after the rebalance, unless `stopEarly` resolves. */
  lingerSeconds: number;
  /** Called when the linger starts; the dashboard closes early when it resolves (Ctrl-C). */
  stopEarly?: () => Promise<unknown>;
}

export interface DemoSummary {
  nodes_before: number;
  nodes_after: number;
  slots: number;
  slots_moved: number;
  moved_fraction: number;
  ideal_fraction: number;
  bytes_moved: number;
  bytes_total: number;
  bytes_moved_fraction: number;
  rows_before: number;
  rows_after: number;
  verified: boolean;
  mode: string;
  writes_during: number;
  client_errors: number;
  client_error_samples: string[];
  lost_writes: number;
  pause_ms_p50: number;
  pause_ms_p99: number;
  pause_ms_max: number;
  rebalance_seconds: number;
  /** With --split: the split --all before the rebalance (slots after it, its write pause per slot). */
  split?: { slots_after: number; splits: number; rows: number; seconds: number; pause_ms_p50: number; pause_ms_max: number; state: string };
  seconds: number;
  postgres: string;
  kept: boolean;
  /** With --keep: the directory of the servers left running (`reshard demo --stop` takes it) and the catalog's URL. */
  kept_dir?: string;
  catalog_url?: string;
}

/** What the demo says as it goes: text lines for people, and progress events. */
export interface DemoReporter {
  say(line?: string): void;
  migrationEvents: MigrationEventSink;
  loadProgress?(rowsLoaded: number, rowsTotal: number): void;
  /** With --keep: where the servers were left and how to reach the catalog (a URL without password). */
  kept?(kept: KeptDemo): void;
}

export interface KeptDemo {
  baseDir: string;
  catalogUrl: string | undefined;
  /** `pg_ctl stop` for each data directory, as the OS user the servers run as. */
  stopCommands: string[];
}

/**
 * The whole story on real local servers: start N+k PostgreSQL servers, shard
 * two colocated tables over N, load rows, add k nodes, plan, rebalance with
 * progress, verify every row is there exactly once, and stop the servers.
 */
export async function runDemo(options: DemoOptions, reporter: DemoReporter): Promise<DemoSummary> {
  const started = Date.now();
  const binaries = findPostgresBinaries();
  const baseDir = mkdtempSync(join(tmpdir(), 'reshard-demo-'));
  const servers: LocalServer[] = [];
  const total = options.nodes + options.add;
  let router: Router | undefined;
  let dashboard: RunningDashboard | undefined;
  try {
    reporter.say(`Starting ${total} PostgreSQL servers (${binaries.source} binaries in ${binaries.binDir}) …`);
    const startedServers = await Promise.allSettled(
      Array.from({ length: total }, (_, i) => startLocalServer({ name: `n${i + 1}`, baseDir, binaries })),
    );
    for (const result of startedServers) if (result.status === 'fulfilled') servers.push(result.value);
    const failed = startedServers.find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    servers.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    for (const server of servers) reporter.say(`  ${server.name}: ${describeConnection(server.connection)}`);

    const access: ClusterAccess = { catalog: servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, options.slots);
    for (const server of servers.slice(0, options.nodes)) await addNode(access, { name: server.name, connection: server.connection });
    for (const table of DEMO_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
    reporter.say(`Sharded users(id) and orders(user_id), colocated, over ${options.nodes} nodes with ${options.slots} slots; catalog on n1.`);

    reporter.say(`Loading ${options.rows} users and ${options.rows} orders …`);
    const rowsLoaded = await loadDemoRows(access, options.rows, (loaded) => reporter.loadProgress?.(loaded, options.rows));
    const before = await verifyCluster(access);
    reporter.say(`Loaded ${rowsLoaded} rows; ${before.ok ? 'every slot attached on its owner only' : `problems: ${before.problems.join('; ')}`}.`);

    for (const table of CHECK_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
    for (const server of servers.slice(options.nodes)) {
      await addNode(access, { name: server.name, connection: server.connection });
      reporter.say(`Added node ${server.name}.`);
    }

    if (options.dashboard) {
      const settings = options.dashboard;
      dashboard = await startDashboard({ access, host: settings.host, port: settings.port, controlToken: settings.controlToken, ...(settings.readToken ? { readToken: settings.readToken } : {}) });
      settings.announce(dashboard.url);
      if (settings.headStartSeconds > 0) {
        reporter.say(`The rebalance starts in ${settings.headStartSeconds} s: open the dashboard to see the plan.`);
        await sleep(settings.headStartSeconds * 1000);
      }
    }

    router = options.clients > 0 ? await Router.connect({ catalog: access.catalog, name: 'reshard demo', poolSizePerNode: options.clients }) : undefined;
    const clock = { now: (): number => 0 };
    const timeline = new MoveTimeline(() => clock.now());
    const workload = router ? new Workload(router, { clients: options.clients, counters: 256, thinkMs: 10, hotSlots: () => timeline.movingSlots() }, options.slots) : undefined;
    if (workload) {
      clock.now = () => workload.now();
      await workload.prepare();
      workload.start();
      reporter.say(`${options.clients} clients write through the router (inserts, counter increments, deletes) during the rebalance.`);
    }

    let split: SplitAllResult | undefined;
    if (options.split) {
      reporter.say(`Splitting every slot (${options.slots} → ${2 * options.slots}), one at a time on its own node, while the clients write …`);
      split = await splitAllSlots(access, { emit: reporter.migrationEvents });
      reporter.say(`Split --all ${split.state}: ${split.splitsDone} slots split, ${split.slotsAfter} slots now, ${split.rows} rows in ${split.seconds.toFixed(1)} s; per-slot write pause p50 ${percentile(split.pausesMs, 0.5).toFixed(0)} ms, max ${split.pausesMs.length ? Math.max(...split.pausesMs).toFixed(0) : 0} ms.`);
    }
    const slotCount = split?.state === 'completed' ? split.slotsAfter : options.slots;

    const prepared = await prepareRebalance(access, { mode: options.mode, dryRun: false });
    for (const warning of prepared.warnings) reporter.say(`warning: ${warning}`);
    reporter.say();
    reporter.say(formatComparison(prepared.comparison));
    reporter.say();
    const summary = prepared.migrationId === undefined ? undefined : await runPreparedRebalance(access, prepared.migrationId, {
      emit: (event) => {
        timeline.handle(event);
        reporter.migrationEvents(event);
      },
      moveConcurrencyMax: options.concurrency ?? MOVE_CONCURRENCY_MAX_DEFAULT,
    });
    const result = prepared;

    const log = await workload?.stop();
    const writes = log ? await verifyWorkload(access, log) : undefined;
    const pauses = log ? timeline.pausesMs(log.samples) : summary?.pausesMs ?? [];
    if (writes) {
      reporter.say(`Live writes: ${log!.samples.length} during the rebalance, ${log!.errors.length} client errors, ${writes.violations.length} violations; per-slot write pause p50 ${percentile(pauses, 0.5).toFixed(0)} ms, max ${pauses.length ? Math.max(...pauses).toFixed(0) : 0} ms.`);
      for (const violation of writes.violations.slice(0, 10)) reporter.say(`  violation: ${violation}`);
      for (const error of log!.errors.slice(0, 5)) reporter.say(`  client error: ${error}`);
    }
    const after = await verifyCluster(access);
    const users = await verifyKeysExactlyOnce(access, 'users', 'id', options.rows);
    const orders = await verifyKeysExactlyOnce(access, 'orders', 'user_id', options.rows);
    const exactlyOnce = [users, orders].every((report) => report.missing === 0 && report.duplicated === 0 && report.unexpected === 0);
    const completed = (summary === undefined || summary.state === 'completed') && (split === undefined || split.state === 'completed');
    if (split && split.state !== 'completed') reporter.say(`The split --all did not complete: ${split.error ?? split.state}`);
    if (!completed) reporter.say(`The migration did not complete: ${summary?.error ?? 'unknown error'}`);
    // The demo's own tables; the live workload's tables grow on purpose.
    const demoRows = (report: { rowsByTable: Record<string, number> }): number => DEMO_TABLES.reduce((sum, table) => sum + (report.rowsByTable[table.name] ?? 0), 0);
    const rowsBefore = demoRows(before);
    const rowsAfter = demoRows(after);
    const verified = completed && after.ok && exactlyOnce && rowsAfter === rowsBefore && (writes?.ok ?? true);
    reporter.say(`Verified: ${verified ? 'yes' : 'NO'} — users + orders: ${rowsAfter} rows after, ${rowsBefore} before; users missing ${users.missing}, duplicated ${users.duplicated}; orders missing ${orders.missing}, duplicated ${orders.duplicated}.`);
    for (const problem of after.problems) reporter.say(`  problem: ${problem}`);

    if (dashboard && options.dashboard) {
      reporter.say(`The dashboard stays up for ${options.dashboard.lingerSeconds} s (Ctrl-C stops the demo sooner).`);
      await Promise.race([sleep(options.dashboard.lingerSeconds * 1000), options.dashboard.stopEarly?.() ?? new Promise(() => {})]);
    }

    const slotsMoved = summary?.slotsMoved ?? 0;
    return {
      nodes_before: options.nodes,
      nodes_after: total,
      slots: slotCount,
      slots_moved: slotsMoved,
      moved_fraction: slotsMoved / slotCount,
      ideal_fraction: options.add / total,
      bytes_moved: summary?.bytesMoved ?? 0,
      bytes_total: result.plan.bytesTotal,
      bytes_moved_fraction: result.plan.bytesTotal > 0 ? result.plan.bytesMoved / result.plan.bytesTotal : 0,
      rows_before: rowsBefore,
      rows_after: rowsAfter,
      verified,
      mode: options.mode,
      writes_during: log?.samples.length ?? 0,
      client_errors: log?.errors.length ?? 0,
      client_error_samples: log?.errors.slice(0, 5) ?? [],
      lost_writes: writes ? writes.violations.length : 0,
      pause_ms_p50: percentile(pauses, 0.5),
      pause_ms_p99: percentile(pauses, 0.99),
      pause_ms_max: pauses.length ? Math.max(...pauses) : 0,
      rebalance_seconds: summary?.seconds ?? 0,
      ...(split ? {
        split: {
          slots_after: split.slotsAfter, splits: split.splitsDone, rows: split.rows, seconds: split.seconds, state: split.state,
          pause_ms_p50: percentile(split.pausesMs, 0.5), pause_ms_max: split.pausesMs.length ? Math.max(...split.pausesMs) : 0,
        },
      } : {}),
      seconds: (Date.now() - started) / 1000,
      postgres: binaries.source,
      kept: options.keep,
      ...(options.keep ? { kept_dir: baseDir, catalog_url: connectionUrl(servers[0]!.connection) } : {}),
    };
  } finally {
    await dashboard?.close();
    await router?.close();
    if (options.keep) {
      for (const server of servers) server.keepAfterExit();
      const osUser = serverOsUser();
      const kept: KeptDemo = {
        baseDir,
        catalogUrl: servers[0] ? connectionUrl(servers[0].connection) : undefined,
        // As root the servers run as another OS user, and pg_ctl must too.
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
