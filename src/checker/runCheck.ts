import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addNode } from '../admin/addNode.js';
import { createShardedTable } from '../admin/createShardedTable.js';
import { initCluster } from '../admin/initCluster.js';
import { rebalance, type MoverModeOption } from '../admin/rebalance.js';
import { removeNode } from '../admin/removeNode.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { MigrationSummary } from '../admin/rebalance.js';
import { sleep } from '../plumbing/waitFor.js';
import { removeServerDirectory, startLocalServer, type LocalServer } from '../local/localServer.js';
import { noPasswords } from '../plumbing/connectNode.js';
import { Router } from '../router/router.js';
import { CHECK_TABLES } from './checkTables.js';
import { MoveTimeline } from './moveTimeline.js';
import { percentile } from '../core/percentile.js';
import { verifyWorkload, type CheckReport } from './verifyWorkload.js';
import { Workload } from './workload.js';

export interface CheckOptions {
  clients: number;
  slots: number;
  counters: number;
  mode: MoverModeOption;
  /** Runs the scenario on these servers (n1 holds the catalog); local throwaway servers when absent. */
  servers?: readonly LocalServer[];
  say?: (line: string) => void;
  emit?: MigrationEventSink;
}

export interface CheckResult {
  report: CheckReport;
  grow: MigrationSummary | undefined;
  shrink: MigrationSummary | undefined;
  writes: number;
  clientErrors: number;
  /** The first few client errors, verbatim. */
  clientErrorSamples: string[];
  pauseMsMax: number;
  pauseMsP99: number;
  seconds: number;
}

/**
 * The consistency check: `clients` concurrent clients write through a router
 * while the cluster grows 3 → 4 and shrinks back 4 → 3; then every
 * acknowledged write is proven present exactly once on its owner.
 */
export async function runCheck(options: CheckOptions): Promise<CheckResult> {
  const started = Date.now();
  const say = options.say ?? (() => {});
  const ownServers = !options.servers;
  const baseDir = ownServers ? mkdtempSync(join(tmpdir(), 'reshard-check-')) : '';
  const servers: LocalServer[] = options.servers ? [...options.servers] : [];
  let router: Router | undefined;
  try {
    if (ownServers) {
      say('Starting 4 PostgreSQL servers …');
      servers.push(...await Promise.all([1, 2, 3, 4].map((i) => startLocalServer({ name: `n${i}`, baseDir }))));
    }
    const access: ClusterAccess = { catalog: servers[0]!.connection, passwords: noPasswords };
    await initCluster(access, options.slots);
    for (const server of servers.slice(0, 3)) await addNode(access, { name: server.name, connection: server.connection });
    for (const table of CHECK_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }
    router = await Router.connect({ catalog: access.catalog, name: 'reshard check', poolSizePerNode: Math.max(4, options.clients) });
    const timelineClock = { now: (): number => 0 };
    const timeline = new MoveTimeline(() => timelineClock.now());
    const workload = new Workload(router, { clients: options.clients, counters: options.counters, hotSlots: () => timeline.movingSlots() }, options.slots);
    timelineClock.now = () => workload.now();
    await workload.prepare();
    workload.start();
    say(`${options.clients} clients are writing through the router.`);
    await sleep(500);
    const emit: MigrationEventSink = (event) => {
      timeline.handle(event);
      options.emit?.(event);
    };

    await addNode(access, { name: servers[3]!.name, connection: servers[3]!.connection });
    const grow = await rebalance(access, { mode: options.mode, dryRun: false, moveConcurrencyMax: 4, emit });
    say(`Grow 3 → 4: ${grow.summary?.state ?? 'nothing to move'}, ${grow.summary?.slotsMoved ?? 0} slots.`);
    await sleep(300);
    await removeNode(access, servers[3]!.name);
    const shrink = await rebalance(access, { mode: options.mode, dryRun: false, moveConcurrencyMax: 4, emit });
    say(`Shrink 4 → 3: ${shrink.summary?.state ?? 'nothing to move'}, ${shrink.summary?.slotsMoved ?? 0} slots.`);
    await sleep(300);
    const log = await workload.stop();
    const report = await verifyWorkload(access, log);
    for (const summary of [grow.summary, shrink.summary]) {
      if (summary && summary.state !== 'completed') report.violations.push(`migration ${summary.migrationId} ${summary.state}: ${summary.error ?? ''}`);
    }
    report.ok = report.violations.length === 0;
    if (!report.ok || log.errors.length > 0) {
      // Where each move's steps fell on the workload's clock, to line violations up with cutovers.
      for (const [slot, lines] of timeline.stepLog) say(`slot ${slot}: ${lines.join(', ')}`);
    }
    const pauses = timeline.pausesMs(log.samples);
    return {
      report,
      grow: grow.summary,
      shrink: shrink.summary,
      writes: log.samples.length,
      clientErrors: log.errors.length,
      clientErrorSamples: log.errors.slice(0, 5),
      pauseMsMax: pauses.length ? Math.max(...pauses) : 0,
      pauseMsP99: percentile(pauses, 0.99),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await router?.close();
    if (ownServers) {
      await Promise.allSettled(servers.map((server) => server.stop('fast')));
      removeServerDirectory(baseDir);
    }
  }
}
