import { autopilotDryRun, decisionDetails, runAutopilot, runAutopilotOnce } from '../../admin/autopilot.js';
import type { AutopilotEvaluation } from '../../admin/autopilotEvaluation.js';
import { AUTOPILOT_DEFAULTS, type AutopilotSettings } from '../../admin/autopilotSettings.js';
import { MOVE_CONCURRENCY_MAX_DEFAULT } from '../../admin/rebalance.js';
import { parseLatencyImpact } from './rebalanceCommands.js';
import { badInput } from '../../core/errors.js';
import { parseTimeWindow } from '../../core/timeWindows.js';
import { formatTable } from '../../planner/index.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import type { MigrationEvent } from '../../plumbing/migrationEvents.js';
import type { Output } from '../output.js';
import { parseDurationMs } from '../parseDuration.js';
import { parseByteSize, parsePercent, parsePositiveNumber, parseWholeNumber } from '../parseNumbers.js';
import { AutopilotMetrics } from '../../dashboard/autopilotMetrics.js';
import { startMetricsServer, type RunningMetricsServer } from '../../dashboard/metricsServer.js';
import { parsePort } from './dashboardCommand.js';

export interface AutopilotCommandOptions {
  once?: boolean;
  dryRun?: boolean;
  period?: string;
  sustain?: string;
  tolerance?: string;
  floor?: string;
  minBenefit?: string;
  bytesTolerance?: string;
  bytesFloor?: string;
  headroom?: string;
  cooldown?: string;
  maxMoves?: string;
  window?: string[];
  mode?: string;
  concurrency?: string;
  lease?: string;
  sample?: string;
  maxLatencyImpact?: string;
  maxCopyRate?: string;
  metricsPort?: string;
  metricsHost?: string;
}

/** `--metrics-host` when only `--metrics-port` is given: loopback. */
export const AUTOPILOT_METRICS_HOST_DEFAULT = '127.0.0.1';

export function autopilotSettings(options: AutopilotCommandOptions): AutopilotSettings {
  const mode = options.mode ?? 'online';
  const copyBytesPerSecMax = parseByteSize(options.maxCopyRate?.replace(/\/s$/i, ''), '--max-copy-rate');
  if (mode !== 'online' && mode !== 'offline') throw badInput(`--mode ${mode} is not a mover`, 'use --mode online or --mode offline');
  return {
    periodMs: parseDurationMs(options.period, '--period', AUTOPILOT_DEFAULTS.periodMs),
    sustainPeriods: parseWholeNumber(options.sustain, '--sustain', 1, AUTOPILOT_DEFAULTS.sustainPeriods),
    tolerance: parsePercent(options.tolerance, '--tolerance', AUTOPILOT_DEFAULTS.tolerance),
    loadFloor: parsePositiveNumber(options.floor, '--floor', AUTOPILOT_DEFAULTS.loadFloor),
    benefitPerMiBMin: parsePositiveNumber(options.minBenefit, '--min-benefit', AUTOPILOT_DEFAULTS.benefitPerMiBMin),
    cooldownMs: options.cooldown === '0' ? 0 : parseDurationMs(options.cooldown, '--cooldown', AUTOPILOT_DEFAULTS.cooldownMs),
    movesMax: parseWholeNumber(options.maxMoves, '--max-moves', 1, AUTOPILOT_DEFAULTS.movesMax),
    windows: (options.window ?? []).map((window) => parseTimeWindow(window)),
    mode,
    moveConcurrencyMax: parseWholeNumber(options.concurrency, '--concurrency', 1, MOVE_CONCURRENCY_MAX_DEFAULT),
    leaseMs: parseDurationMs(options.lease, '--lease', AUTOPILOT_DEFAULTS.leaseMs),
    sampleMs: parseDurationMs(options.sample, '--sample', AUTOPILOT_DEFAULTS.sampleMs),
    bytesTolerance: parsePercent(options.bytesTolerance, '--bytes-tolerance', AUTOPILOT_DEFAULTS.bytesTolerance),
    bytesFloor: parseByteSize(options.bytesFloor, '--bytes-floor') ?? AUTOPILOT_DEFAULTS.bytesFloor,
    headroomFraction: parsePercent(options.headroom, '--headroom', AUTOPILOT_DEFAULTS.headroomFraction),
    ...(options.maxLatencyImpact !== undefined ? { maxLatencyImpact: parseLatencyImpact(options.maxLatencyImpact)! } : {}),
    ...(copyBytesPerSecMax !== undefined ? { copyBytesPerSecMax } : {}),
  };
}

export async function autopilotCommand(output: Output, access: ClusterAccess, options: AutopilotCommandOptions): Promise<void> {
  const settings = autopilotSettings(options);
  const emit = (event: MigrationEvent): void => {
    output.event(event);
    if (event.type === 'move_done') output.text(`  slot ${event.slot} ${event.source} → ${event.target} moved in ${event.seconds.toFixed(1)} s`);
    if (event.type === 'migration_finished') output.text(`  migration ${event.migrationId} ${event.state}: ${event.slotsMoved} slot(s) in ${event.seconds.toFixed(1)} s`);
  };
  if (options.once && options.metricsPort !== undefined) {
    throw badInput('--metrics-port serves a long-running autopilot, and --once ends after one evaluation', 'drop --once, or drop --metrics-port');
  }
  if (options.metricsHost !== undefined && options.metricsPort === undefined) {
    throw badInput('--metrics-host needs --metrics-port', 'pass e.g. --metrics-port 9464');
  }
  if (options.once && options.dryRun) {
    const evaluation = await autopilotDryRun(access, settings);
    output.result({ dry_run: true, ...evaluationJson(evaluation) });
    output.text(describeEvaluation(evaluation));
    return;
  }
  if (options.once) {
    const outcome = await runAutopilotOnce(access, settings, { emit });
    output.result({ dry_run: false, ...evaluationJson(outcome.evaluation), ...(outcome.migrationId !== undefined ? { migration_id: outcome.migrationId } : {}),
      ...(outcome.summary ? { migration_state: outcome.summary.state } : {}), ...(outcome.error ? { error: outcome.error } : {}) });
    output.text(describeEvaluation(outcome.evaluation));
    if (outcome.error) throw badInput(`the autopilot could not act: ${outcome.error}`, 'see `reshard status` and the decision log');
    return;
  }
  // Long-running: the first SIGINT/SIGTERM ends the loop after the migration in flight; a second one exits now
  // (a restarted autopilot resumes what it left).
  // Its /metrics, when asked for: started before the loop, so a bad port fails at once.
  const metrics = options.metricsPort === undefined ? undefined : new AutopilotMetrics();
  let metricsServer: RunningMetricsServer | undefined;
  if (metrics) {
    const host = options.metricsHost ?? AUTOPILOT_METRICS_HOST_DEFAULT;
    metricsServer = await startMetricsServer(metrics, { host, port: parsePort(options.metricsPort, '--metrics-port', 0), portOption: '--metrics-port', hostOption: '--metrics-host' });
    output.event({ type: 'autopilot_metrics', url: metricsServer.url });
    output.text(`Metrics: ${metricsServer.url}`);
  }
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    signals++;
    if (signals === 1) {
      output.text('Stopping after the work in flight (again to stop now; a restarted autopilot resumes it).');
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  output.text(`Autopilot: every ${(settings.periodMs / 1000).toFixed(1)} s, ${settings.windows.length > 0 ? `acting within ${settings.windows.map((window) => window.text).join(', ')} UTC` : 'acting at any time'}${options.dryRun ? ' (dry run: plans only)' : ''}.`);
  try {
    await runAutopilot(access, settings, {
      emit: (event) => {
        metrics?.recordEvent(event);
        emit(event);
      },
      signal: controller.signal, dryRun: options.dryRun ?? false,
      onLease: (held) => metrics?.setLeaseHeld(held),
      onEvaluation: (evaluation) => {
        metrics?.recordEvaluation(evaluation);
        output.event({ type: 'autopilot_evaluation', ...evaluationJson(evaluation) });
        output.text(`${evaluation.at} ${evaluation.action}: ${evaluation.reason}`);
      },
      onWaitingForLease: (holder, until) => {
        output.event({ type: 'autopilot_waiting', holder, lease_until: until.toISOString() });
        output.text(`Waiting: another autopilot (${holder}) holds the lease until ${until.toISOString()}.`);
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await metricsServer?.close();
  }
  output.result({ stopped: true });
}

export function evaluationJson(evaluation: AutopilotEvaluation): Record<string, unknown> {
  return decisionDetails(evaluation);
}

export function describeEvaluation(evaluation: AutopilotEvaluation): string {
  const lines: string[] = [];
  const source = evaluation.source === 'routers'
    ? `reported by ${evaluation.routers} router(s)`
    : evaluation.source === 'nodes' ? 'sampled from the nodes\' counters (no router reported)' : 'not measured';
  lines.push(`Load (${evaluation.unit || 'none'}) ${source}: ${evaluation.periodsMeasured} of the last ${evaluation.sustainPeriods} period(s) of ${(evaluation.periodMs / 1000).toFixed(1)} s measured.`);
  lines.push('');
  lines.push(formatTable([['node', 'weight', 'slots', 'load', 'share', 'weighted share', 'load / share'], ...evaluation.nodes.map((node) => [
    node.node, String(node.weight), String(node.slots), node.load.toFixed(1), `${(node.share * 100).toFixed(1)} %`, `${(node.weightedShare * 100).toFixed(1)} %`,
    Number.isFinite(node.ratio) ? node.ratio.toFixed(2) : '∞',
  ])]));
  lines.push('', 'Triggers considered:');
  for (const trigger of evaluation.triggers) lines.push(`  ${trigger.fired ? 'FIRED' : 'quiet'}  ${trigger.kind} ${trigger.node}: ${trigger.reason}`);
  if (evaluation.coolingSlots.length > 0) lines.push(`Cooling down (moved by the autopilot lately, left in place): slots ${evaluation.coolingSlots.join(', ')}`);
  if (evaluation.migration) lines.push(`Migration ${evaluation.migration.id}: ${evaluation.migration.state}, ${evaluation.migration.held ? 'running' : 'not running'}, started ${evaluation.migration.byAutopilot ? 'by the autopilot' : 'by hand'}`);
  if (evaluation.plan) {
    for (const move of evaluation.plan.moves) {
      lines.push(`Move: slot ${move.slot} ${move.from} → ${move.to}: ${move.load.toFixed(1)} load, ${move.bytes} bytes, removes ${move.loadRemoved.toFixed(1)} load above shares (${(move.benefitPerByte * 1_048_576).toPrecision(3)} per MiB)`);
    }
    for (const entry of evaluation.plan.unresolved) lines.push(`Stays over: ${entry.node}: ${entry.reason}`);
  }
  lines.push('', `Decision: ${evaluation.action}: ${evaluation.reason}.`);
  if (evaluation.windows.length > 0) lines.push(`Windows (UTC): ${evaluation.windows.join(', ')}; now ${evaluation.inWindow ? 'inside' : 'outside'}.`);
  return lines.join('\n');
}
