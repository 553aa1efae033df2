import cliProgress from 'cli-progress';
import { runDemo, type DemoDashboardOptions, type KeptDemo } from '../../demo/runDemo.js';
import { announceDashboard, dashboardSettings, untilStopSignal } from './dashboardCommand.js';
import { badInput } from '../../core/errors.js';
import { MigrationProgress } from '../migrationProgress.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';
import { assertSlotCount } from '../../admin/initCluster.js';
import { stopKeptServers } from '../../demo/stopKeptDemo.js';
import { runAdoptDemo, type AdoptDemoSummary } from '../../demo/runAdoptDemo.js';

export interface DemoCommandOptions {
  nodes?: string; add?: string; rows?: string; slots?: string; keep?: boolean; split?: boolean; stop?: string; concurrency?: string; mode?: string; clients?: string;
  dashboard?: boolean; dashboardHost?: string; dashboardPort?: string; dashboardLinger?: string; adopt?: boolean;
}

/** Bounds that keep the demo a demo on a laptop: each node is a real server. */
const DEMO_NODES_MAX = 16;

/** How the user called us, for commands we print: `npx reshard` when run through npx (not on PATH), else `reshard`. */
function reshardCommand(): string {
  return process.env['npm_command'] === 'exec' ? 'npx reshard' : 'reshard';
}

export async function demoCommand(output: Output, options: DemoCommandOptions): Promise<boolean> {
  if (options.stop !== undefined) {
    const stopped = stopKeptServers(options.stop);
    output.result({ stopped: stopped.stopped, removed: stopped.baseDir });
    output.text(`Stopped ${stopped.stopped.length} server(s) and removed ${stopped.baseDir}.`);
    return true;
  }
  const nodes = parseWholeNumber(options.nodes, '--nodes', 1, 3);
  const add = parseWholeNumber(options.add, '--add', 1, 1);
  const rows = parseWholeNumber(options.rows, '--rows', 1, 100_000);
  const slots = parseWholeNumber(options.slots, '--slots', 1, 256);
  assertSlotCount(slots);
  if (nodes + add > DEMO_NODES_MAX) throw badInput(`the demo starts at most ${DEMO_NODES_MAX} servers, not ${nodes + add}`, 'use fewer --nodes or --add');
  const concurrency = options.concurrency === undefined ? undefined : parseWholeNumber(options.concurrency, '--concurrency', 1);

  const progress = new MigrationProgress(output);
  let loadBar: cliProgress.SingleBar | undefined;
  const mode = options.mode ?? 'online';
  if (mode !== 'online' && mode !== 'offline') throw badInput(`--mode ${mode} is not a mover`, 'use --mode online or --mode offline');
  const clients = parseWholeNumber(options.clients, '--clients', 0, 8);
  const say = (line = ''): void => {
    if (output.json) output.errorStream.write(`${line}\n`);
    else output.text(line);
  };
  if (options.adopt) {
    if (options.split) throw badInput('--adopt and --split are two demos', 'pass one of them');
    if (options.dashboard) throw badInput('--adopt has no dashboard yet', 'drop --dashboard, or run the demo without --adopt');
    if (options.mode !== undefined && options.mode !== 'online') throw badInput('--adopt is online only', 'drop --mode');
    return adoptDemo(output, { nodes: nodes + add, rows, slots, clients, keep: options.keep ?? false }, say);
  }
  const dashboard = options.dashboard ? demoDashboard(options, say) : undefined;
  // Said last, after the summary (or the error): what to do with the servers the demo left running.
  let keptDemo: KeptDemo | undefined;
  const sayKept = (): void => {
    if (!keptDemo) return;
    const reshard = reshardCommand();
    say();
    say(`Servers kept running in ${keptDemo.baseDir}.`);
    if (keptDemo.catalogUrl) {
      say(`  catalog:  ${keptDemo.catalogUrl}`);
      say(`  try:      export RESHARD_CATALOG=${keptDemo.catalogUrl}; ${reshard} node list`);
      say(`  router:   RESHARD_CATALOG=${keptDemo.catalogUrl} node examples/router-example.mjs`);
    }
    say(`  stop:     ${reshard} demo --stop ${keptDemo.baseDir}`);
    say(`            (or each server: ${keptDemo.stopCommands[0] ?? 'pg_ctl stop -D …'}${keptDemo.stopCommands.length > 1 ? ', …' : ''})`);
  };
  const summary = await runDemo({ nodes, add, rows, slots, mode, clients, keep: options.keep ?? false, ...(options.split ? { split: true } : {}), ...(concurrency ? { concurrency } : {}), ...(dashboard ? { dashboard } : {}) }, {
    say,
    kept: (kept) => { keptDemo = kept; },
    migrationEvents: progress.handle,
    loadProgress: (loaded, total) => {
      if (!output.interactive) return;
      if (!loadBar) {
        loadBar = new cliProgress.SingleBar({ format: '  loading {bar} {value}/{total} users', hideCursor: true, stream: output.errorStream as NodeJS.WriteStream }, cliProgress.Presets.shades_classic);
        loadBar.start(total, 0);
      }
      loadBar.update(loaded);
      if (loaded >= total) loadBar.stop();
    },
  }).catch((error: unknown) => {
    sayKept();
    throw error;
  });
  output.result(summary);
  output.text();
  if (summary.split) output.text(`Split: every slot in two (${summary.split.slots_after} slots), ${summary.split.rows} rows in ${summary.split.seconds.toFixed(1)} s, per-slot write pause p50 ${summary.split.pause_ms_p50.toFixed(0)} ms, max ${summary.split.pause_ms_max.toFixed(0)} ms.`);
  output.text(`Summary: ${summary.nodes_before} → ${summary.nodes_after} nodes, moved ${summary.slots_moved} of ${summary.slots} slots ` +
    `(${(summary.moved_fraction * 100).toFixed(1)} %, ideal ${(summary.ideal_fraction * 100).toFixed(1)} %), ` +
    `${summary.rows_after} rows after / ${summary.rows_before} before, verified: ${summary.verified}, ` +
    `rebalance ${summary.rebalance_seconds.toFixed(1)} s (${summary.mode}), total ${summary.seconds.toFixed(1)} s; ` +
    `${summary.writes_during} live writes, ${summary.client_errors} client errors, ${summary.lost_writes} lost, longest per-slot pause ${summary.pause_ms_max.toFixed(0)} ms.`);
  sayKept();
  return summary.verified;
}

/** The demo's dashboard: port 7463 by default (0 = any), up 5 s before the rebalance and 60 s after it, or until Ctrl-C. */
function demoDashboard(options: DemoCommandOptions, say: (line: string) => void): DemoDashboardOptions {
  const settings = dashboardSettings({ ...(options.dashboardHost !== undefined ? { host: options.dashboardHost } : {}), ...(options.dashboardPort !== undefined ? { port: options.dashboardPort } : {}) });
  return {
    host: settings.host,
    port: settings.port,
    controlToken: settings.controlToken,
    ...(settings.readToken ? { readToken: settings.readToken } : {}),
    announce: (url) => announceDashboard(say, url, settings),
    headStartSeconds: DEMO_DASHBOARD_HEAD_START_SECONDS,
    lingerSeconds: parseWholeNumber(options.dashboardLinger, '--dashboard-linger', 0, DEMO_DASHBOARD_LINGER_SECONDS),
    stopEarly: untilStopSignal,
  };
}

const DEMO_DASHBOARD_HEAD_START_SECONDS = 5;
const DEMO_DASHBOARD_LINGER_SECONDS = 60;

/** `reshard demo --adopt`: one plain database adopted into the demo's nodes under live writers. */
async function adoptDemo(output: Output, options: Parameters<typeof runAdoptDemo>[0], say: (line?: string) => void): Promise<boolean> {
  let loadBar: cliProgress.SingleBar | undefined;
  let keptDemo: KeptDemo | undefined;
  const sayKept = (): void => {
    if (!keptDemo) return;
    const reshard = reshardCommand();
    say();
    say(`Servers kept running in ${keptDemo.baseDir}.`);
    if (keptDemo.catalogUrl) say(`  catalog:  ${keptDemo.catalogUrl}`);
    say(`  stop:     ${reshard} demo --stop ${keptDemo.baseDir}`);
  };
  const summary: AdoptDemoSummary = await runAdoptDemo(options, {
    say,
    kept: (kept) => { keptDemo = kept; },
    migrationEvents: () => {},
    loadProgress: (loaded, total) => {
      if (!output.interactive) return;
      if (!loadBar) {
        loadBar = new cliProgress.SingleBar({ format: '  loading {bar} {value}/{total} users', hideCursor: true, stream: output.errorStream as NodeJS.WriteStream }, cliProgress.Presets.shades_classic);
        loadBar.start(total, 0);
      }
      loadBar.update(loaded);
      if (loaded >= total) loadBar.stop();
    },
  }).catch((error: unknown) => {
    sayKept();
    throw error;
  });
  output.result(summary);
  output.text();
  output.text(`Summary: adopted users from one plain database into ${summary.nodes} nodes (${summary.slots} slots) in ${summary.adopt_seconds.toFixed(1)} s: ` +
    `${summary.rows_loaded} rows loaded, ${summary.writes_during} live inserts during the adoption, ${summary.rows_after} rows after, verified: ${summary.verified}; ` +
    `${summary.client_errors} client errors, ${summary.missing} missing, ${summary.duplicated} duplicated; longest insert ${summary.write_ms_max.toFixed(0)} ms; total ${summary.seconds.toFixed(1)} s.`);
  sayKept();
  return summary.verified;
}
