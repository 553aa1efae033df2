import cliProgress from 'cli-progress';
import { runDemo } from '../../demo/runDemo.js';
import { badInput } from '../../core/errors.js';
import { MigrationProgress } from '../migrationProgress.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';
import { assertSlotCount } from '../../admin/initCluster.js';

export interface DemoCommandOptions { nodes?: string; add?: string; rows?: string; slots?: string; keep?: boolean; concurrency?: string; mode?: string; clients?: string }

/** Bounds that keep the demo a demo on a laptop: each node is a real server. */
const DEMO_NODES_MAX = 16;

export async function demoCommand(output: Output, options: DemoCommandOptions): Promise<boolean> {
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
  const summary = await runDemo({ nodes, add, rows, slots, mode, clients, keep: options.keep ?? false, ...(concurrency ? { concurrency } : {}) }, {
    say: (line = '') => {
      if (output.json) output.errorStream.write(`${line}\n`);
      else output.text(line);
    },
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
  });
  output.result(summary);
  output.text();
  output.text(`Summary: ${summary.nodes_before} → ${summary.nodes_after} nodes, moved ${summary.slots_moved} of ${summary.slots} slots ` +
    `(${(summary.moved_fraction * 100).toFixed(1)} %, ideal ${(summary.ideal_fraction * 100).toFixed(1)} %), ` +
    `${summary.rows_after} rows after / ${summary.rows_before} before, verified: ${summary.verified}, ` +
    `rebalance ${summary.rebalance_seconds.toFixed(1)} s (${summary.mode}), total ${summary.seconds.toFixed(1)} s; ` +
    `${summary.writes_during} live writes, ${summary.client_errors} client errors, ${summary.lost_writes} lost, longest per-slot pause ${summary.pause_ms_max.toFixed(0)} ms.`);
  return summary.verified;
}
