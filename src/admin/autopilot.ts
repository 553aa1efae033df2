import { slotIds, slotOwner } from '../core/slotMap.js';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { AUTOPILOT_PLAN_ORIGIN, recordAutopilotDecision, type AutopilotDecisionKind } from '../catalog/autopilotDecisions.js';
import { releaseAutopilotLease, takeAutopilotLease } from '../catalog/autopilotLease.js';
import { readControl, requestPause, requestResume } from '../catalog/migrationControl.js';
import { errorText } from '../core/errors.js';
import { insideWindows } from '../core/timeWindows.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { errorFields, log } from '../plumbing/log.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { planHeadroomMoves, planLoadMoves, planRebalance, type Plan } from '../planner/index.js';
import { balancingNodes } from './loadReport.js';
import { ACTING_AUTOPILOT_ACTIONS, evaluateAutopilot, type AutopilotEvaluation, type AutopilotMemory } from './autopilotEvaluation.js';
import { assertAutopilotSettings, MOVE_BYTES_FLOOR, type AutopilotSettings } from './autopilotSettings.js';
import { REPLICATION_WATCH_DEFAULT } from '../coordinator/replicationWatch.js';
import { mergeSlot, splitSlot } from './slotExchange.js';
import { slotExchangeOf, type SlotExchangePlan } from '../catalog/slotExchanges.js';
import { prepareRebalance, resumeMigration, runPreparedRebalance, type MigrationSummary } from './rebalance.js';

const logger = log('autopilot');

/** How often a running migration is checked against the windows (paused at a window's end, resumed in the next). */
const WINDOW_CHECK_MS = 1_000;

export interface AutopilotRunOptions {
  emit: MigrationEventSink;
  /** Called with every evaluation, acted on or not. */
  onEvaluation?: (evaluation: AutopilotEvaluation) => void;
  /** Called when the lease is held by another autopilot (this one waits). */
  onWaitingForLease?: (holder: string, leaseUntil: Date) => void;
  /** Ends the loop (after the migration in flight: a process stopped harder leaves it to the next autopilot, which resumes it). */
  signal?: AbortSignal;
  /** Plan and journal, never act. */
  dryRun?: boolean;
  /** Called whenever this process learns whether it holds the lease (taken, renewed, lost, given back). */
  onLease?: (held: boolean) => void;
  /** The time the windows are read at (default: the system clock); tests move it to cross a window's edge in seconds. */
  clock?: () => Date;
}

export interface AutopilotOutcome {
  evaluation: AutopilotEvaluation;
  migrationId?: number;
  summary?: MigrationSummary;
  error?: string;
}

/** The name this process holds the lease under: host, pid and a random part (two processes never share it). */
export function autopilotHolderName(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/** `reshard autopilot --once --dry-run`: what it would do now and why; reads only. */
export async function autopilotDryRun(access: ClusterAccess, settings: AutopilotSettings): Promise<AutopilotEvaluation> {
  assertAutopilotSettings(settings);
  return evaluateAutopilot(access, settings, undefined);
}

/**
 * One evaluation and, if it calls for it, the action (start or resume a
 * migration and run it to its end), under the lease. Every decision is
 * journaled. A second autopilot holding the lease makes this one wait for it
 * (bounded by one lease length), then it gives up with the holder named.
 */
export async function runAutopilotOnce(access: ClusterAccess, settings: AutopilotSettings, options: AutopilotRunOptions, holder = autopilotHolderName()): Promise<AutopilotOutcome> {
  assertAutopilotSettings(settings);
  const lease = await withCatalog(access, (catalog) => takeAutopilotLease(catalog, holder, settings.leaseMs));
  options.onLease?.(lease.held);
  if (!lease.held) {
    const evaluation = await evaluateAutopilot(access, settings, undefined, clockOf(options)());
    return { evaluation: { ...evaluation, action: 'wait', intent: 'wait', reason: `another autopilot (${lease.holder}) holds the lease until ${lease.leaseUntil.toISOString()}` } };
  }
  const renewal = renewLease(access, holder, settings.leaseMs, options.onLease);
  try {
    return await evaluateAndAct(access, settings, options, undefined, holder);
  } finally {
    renewal.stop();
    await withCatalog(access, (catalog) => releaseAutopilotLease(catalog, holder)).catch(() => {});
    options.onLease?.(false);
  }
}

/**
 * The long-running autopilot: one active instance per catalog (a second one
 * waits for the lease), one evaluation per period, each journaled when it
 * acts or when its reason changes. Ends on `signal`.
 */
export async function runAutopilot(access: ClusterAccess, settings: AutopilotSettings, options: AutopilotRunOptions): Promise<void> {
  assertAutopilotSettings(settings);
  const holder = autopilotHolderName();
  const memory: AutopilotMemory = { nodePeriods: [] };
  let lastReason: string | undefined;
  try {
    while (!options.signal?.aborted) {
      const lease = await withCatalog(access, (catalog) => takeAutopilotLease(catalog, holder, settings.leaseMs)).catch((error: unknown) => {
        logger.warn({ ...errorFields(error) }, 'the catalog cannot be reached to take the lease; trying again next period');
        return undefined;
      });
      if (lease) options.onLease?.(lease.held);
      if (lease && !lease.held) {
        options.onWaitingForLease?.(lease.holder, lease.leaseUntil);
        await sleep(Math.min(settings.periodMs, Math.max(250, lease.leaseUntil.getTime() - Date.now() + 50)), options.signal);
        continue;
      }
      if (lease) {
        const renewal = renewLease(access, holder, settings.leaseMs, options.onLease);
        try {
          const outcome = await evaluateAndAct(access, settings, options, memory, holder, lastReason);
          lastReason = outcome.evaluation.reason;
        } catch (error) {
          logger.error({ ...errorFields(error) }, 'an autopilot period failed; trying again next period');
        } finally {
          renewal.stop();
        }
      }
      await sleep(settings.periodMs, options.signal);
    }
  } finally {
    await withCatalog(access, (catalog) => releaseAutopilotLease(catalog, holder)).catch(() => {});
    options.onLease?.(false);
  }
}

async function evaluateAndAct(
  access: ClusterAccess, settings: AutopilotSettings, options: AutopilotRunOptions, memory: AutopilotMemory | undefined, holder: string, lastReason?: string,
): Promise<AutopilotOutcome> {
  const evaluation = await evaluateAutopilot(access, settings, memory, clockOf(options)());
  options.onEvaluation?.(evaluation);
  logger.info({ action: evaluation.action, reason: evaluation.reason, nodes: evaluation.nodes.map((node) => ({ node: node.node, ratio: node.ratio })) }, `autopilot: ${evaluation.action}`);
  const acts = !options.dryRun && ACTING_AUTOPILOT_ACTIONS.includes(evaluation.action);
  if (!acts) {
    // Journaled when something changes: a watch that sees the same thing every period writes it once.
    if (evaluation.reason !== lastReason) await journal(access, holder, 'evaluate', false, evaluation.reason, decisionDetails(evaluation));
    return { evaluation };
  }
  if (evaluation.action === 'resume') {
    const migrationId = evaluation.migration!.id;
    await journal(access, holder, 'resume', true, evaluation.reason, decisionDetails(evaluation), migrationId);
    // A split of its own is finished by running it again (it continues from its journal); the move of its high
    // child, a migration of its own, is resumed as any move. A hot slot still too hot is split or moved next period.
    const exchange = await withCatalog(access, (catalog) => slotExchangeOf(catalog, migrationId));
    if (exchange) return finishExchange(access, holder, evaluation, migrationId, exchange, options);
    return finish(access, holder, evaluation, migrationId, () => withWindowWatch(access, settings, clockOf(options), holder, migrationId, () => resumeMigration(access, { emit: options.emit, moveConcurrencyMax: settings.moveConcurrencyMax, ...throttleOf(settings) })));
  }
  if (evaluation.action === 'start-split') return startSplit(access, settings, holder, evaluation, options);
  // Moving off a node short of space: the WAL its moves may retain must fit in what it has left (half of it).
  const throttle = evaluation.action === 'start-headroom' ? headroomThrottle(settings, evaluation) : throttleOf(settings);
  let prepared;
  try {
    prepared = await prepareRebalance(access, {
      mode: settings.mode, dryRun: false, ...throttle,
      choosePlan: (snapshot, input) => {
        if (evaluation.action === 'start-nodes') return { ...planRebalance(input), origin: AUTOPILOT_PLAN_ORIGIN, trigger: 'nodes' } as Plan;
        const slots = slotIds(snapshot.slotMap).map((slot) => ({ slot, owner: slotOwner(snapshot.slotMap, slot), load: evaluation.slotLoads.get(slot) ?? 0, bytes: snapshot.slotBytes[slot] ?? 0 }));
        const excludedSlots = new Set(evaluation.coolingSlots);
        // Planned again on the map as it is now (it may have changed since the evaluation), with the loads and spaces measured.
        const loadPlan = evaluation.action === 'start-headroom'
          ? planHeadroomMoves({
            nodes: balancingNodes(snapshot.nodes), slots, spaces: evaluation.spaces, headroomFraction: settings.headroomFraction,
            short: evaluation.triggers.filter((trigger) => trigger.kind === 'headroom' && trigger.fired).map((trigger) => trigger.node), excludedSlots, movesMax: settings.movesMax,
          })
          : evaluation.action === 'start-bytes'
            ? planLoadMoves({
              nodes: balancingNodes(snapshot.nodes), slots: slots.map((slot) => ({ ...slot, load: slot.bytes })), tolerance: settings.bytesTolerance, loadFloor: settings.bytesFloor,
              benefitPerByteMin: 0, moveBytesFloor: MOVE_BYTES_FLOOR, excludedSlots, movesMax: settings.movesMax,
            })
            : planLoadMoves({
              nodes: balancingNodes(snapshot.nodes), slots, tolerance: settings.tolerance, loadFloor: settings.loadFloor,
              benefitPerByteMin: settings.benefitPerMiBMin / 1_048_576, moveBytesFloor: MOVE_BYTES_FLOOR, excludedSlots, movesMax: settings.movesMax,
            });
        const owners = [...snapshot.slotMap.owners];
        for (const move of loadPlan.moves) owners[move.slot] = move.to;
        const counts: Record<string, number> = {};
        for (const node of input.nodes) counts[node.name] = 0;
        for (const owner of owners) if (owner !== undefined) counts[owner] = (counts[owner] ?? 0) + 1;
        const plan: Plan & Record<string, unknown> = {
          modulus: snapshot.slotMap.modulus, baseEpoch: snapshot.slotMap.epoch,
          moves: loadPlan.moves.map(({ slot, from, to, bytes, wave }) => ({ slot, from, to, bytes, wave })),
          targetSlotCounts: counts, slotsMoved: loadPlan.moves.length, bytesMoved: loadPlan.moves.reduce((sum, move) => sum + move.bytes, 0),
          bytesTotal: snapshot.slotBytes.reduce((sum, bytes) => sum + bytes, 0), waves: loadPlan.waves,
          origin: AUTOPILOT_PLAN_ORIGIN, trigger: evaluation.action === 'start-headroom' ? 'headroom' : evaluation.action === 'start-bytes' ? 'bytes' : 'load',
          loadMoves: loadPlan.moves, unresolved: loadPlan.unresolved,
        };
        return plan;
      },
    });
  } catch (error) {
    await journal(access, holder, 'start', false, `could not start: ${errorText(error)}`, decisionDetails(evaluation));
    return { evaluation, error: errorText(error) };
  }
  if (prepared.migrationId === undefined) {
    await journal(access, holder, 'start', false, 'nothing to move on the map as it is now', decisionDetails(evaluation));
    return { evaluation };
  }
  const migrationId = prepared.migrationId;
  await journal(access, holder, 'start', true, evaluation.reason, { ...decisionDetails(evaluation), warnings: prepared.warnings, throttle: throttle.throttle ?? null }, migrationId);
  return finish(access, holder, evaluation, migrationId, () => withWindowWatch(access, settings, clockOf(options), holder, migrationId,
    () => runPreparedRebalance(access, migrationId, { emit: options.emit, moveConcurrencyMax: settings.moveConcurrencyMax, ...throttle })));
}

/**
 * A slot too hot for any node: `reshard split --slot N --to NODE`'s own entry
 * point (one migration: the low child stays, the high child is placed on
 * NODE), journaled as the autopilot's start and finish.
 */
async function startSplit(access: ClusterAccess, settings: AutopilotSettings, holder: string, evaluation: AutopilotEvaluation, options: AutopilotRunOptions): Promise<AutopilotOutcome> {
  const split = evaluation.split!;
  const details = { ...decisionDetails(evaluation), split };
  await journal(access, holder, 'start', true, evaluation.reason, details);
  try {
    // One migration (each row copied once: the low half on its node, the high half to its new node) that runs
    // to its end like a split in place: its write pause is one freeze, and it has no checkpoint between slots to pause at.
    const result = await splitSlot(access, { slot: split.slot, to: split.to, emit: options.emit, origin: AUTOPILOT_PLAN_ORIGIN });
    const moved = result.moved;
    const summary = `split slot ${split.slot} on ${split.from} into ${result.replacements.map((child) => `slot ${child.slot} (modulus ${child.modulus})`).join(' and ')}: ${result.rows ?? '?'} rows, writes paused ${result.pauseMs?.toFixed(0) ?? '?'} ms (migration ${result.migrationId})`
      + (moved ? `; slot ${moved.slot} moved to ${moved.to}: migration ${moved.migrationId} ${moved.state}` : '');
    await journal(access, holder, 'finish', true, summary, { split, replacements: result.replacements, rows: result.rows ?? null, pauseMs: result.pauseMs ?? null, moved: moved ?? null }, result.migrationId);
    return { evaluation, ...(result.migrationId !== undefined ? { migrationId: result.migrationId } : {}) };
  } catch (error) {
    await journal(access, holder, 'finish', false, `split of slot ${split.slot} stopped: ${errorText(error)}`, { split }).catch(() => {});
    return { evaluation, error: errorText(error) };
  }
}

/** An exchange (split or merge) the autopilot started and left unfinished: run again to its end, journaled. */
async function finishExchange(
  access: ClusterAccess, holder: string, evaluation: AutopilotEvaluation, migrationId: number, exchange: SlotExchangePlan, options: AutopilotRunOptions,
): Promise<AutopilotOutcome> {
  try {
    const exchangeOptions = { slot: exchange.slot, emit: options.emit, origin: AUTOPILOT_PLAN_ORIGIN };
    const result = exchange.kind === 'split' ? await splitSlot(access, exchangeOptions) : await mergeSlot(access, exchangeOptions);
    await journal(access, holder, 'finish', true, `${exchange.kind} of slot ${exchange.slot} finished (migration ${migrationId}): ${result.rows ?? '?'} rows, writes paused ${result.pauseMs?.toFixed(0) ?? '?'} ms`,
      { exchange: { kind: exchange.kind, slot: exchange.slot }, rows: result.rows ?? null, pauseMs: result.pauseMs ?? null }, migrationId);
    return { evaluation, migrationId };
  } catch (error) {
    await journal(access, holder, 'finish', false, `${exchange.kind} of slot ${exchange.slot} stopped: ${errorText(error)}`, { exchange: { kind: exchange.kind, slot: exchange.slot } }, migrationId).catch(() => {});
    return { evaluation, migrationId, error: errorText(error) };
  }
}

async function finish(access: ClusterAccess, holder: string, evaluation: AutopilotEvaluation, migrationId: number, run: () => Promise<MigrationSummary>): Promise<AutopilotOutcome> {
  try {
    const summary = await run();
    await journal(access, holder, 'finish', true, `migration ${migrationId} ${summary.state}: ${summary.slotsMoved} slot(s), ${summary.bytesMoved} bytes in ${summary.seconds.toFixed(1)} s${summary.error ? ` (${summary.error})` : ''}`,
      { state: summary.state, slotsMoved: summary.slotsMoved, bytesMoved: summary.bytesMoved, seconds: summary.seconds, pausesMs: summary.pausesMs }, migrationId);
    return { evaluation, migrationId, summary };
  } catch (error) {
    await journal(access, holder, 'finish', false, `migration ${migrationId} stopped: ${errorText(error)}`, {}, migrationId).catch(() => {});
    return { evaluation, migrationId, error: errorText(error) };
  }
}

/**
 * Runs the migration while watching the windows: at a window's end it asks
 * the migration to pause (work in flight finishes first), in the next window
 * it lets it go on. A pause it did not ask for is left alone.
 */
async function withWindowWatch(access: ClusterAccess, settings: AutopilotSettings, clock: () => Date, holder: string, migrationId: number, run: () => Promise<MigrationSummary>): Promise<MigrationSummary> {
  let pausedByUs = false;
  let checking = false;
  const check = async (): Promise<void> => {
    if (checking) return;
    checking = true;
    try {
      const now = clock();
      const inside = insideWindows(settings.windows, now);
      const windows = settings.windows.map((window) => window.text);
      const at = `${now.toISOString().slice(11, 19)} UTC`;
      await withCatalog(access, async (catalog) => {
        const control = await readControl(catalog, migrationId);
        if (!inside && control === 'run') {
          await requestPause(catalog, migrationId);
          pausedByUs = true;
          const summary = `outside the windows (${windows.join(', ')} UTC) at ${at}: migration ${migrationId} paused at its next checkpoint (steps in flight finish), to go on in the next window`;
          logger.info({ migrationId }, `autopilot: ${summary}`);
          await recordAutopilotDecision(catalog, { holder, kind: 'pause', acted: true, migrationId, summary, details: { edge: 'window-end', at: now.toISOString(), windows, control } });
        } else if (inside && pausedByUs && control === 'pause') {
          await requestResume(catalog, migrationId);
          pausedByUs = false;
          const summary = `inside a window (${windows.join(', ')} UTC) again at ${at}: migration ${migrationId} resumed`;
          logger.info({ migrationId }, `autopilot: ${summary}`);
          await recordAutopilotDecision(catalog, { holder, kind: 'resume', acted: true, migrationId, summary, details: { edge: 'window-start', at: now.toISOString(), windows, control } });
        }
      });
    } catch (error) {
      logger.warn({ ...errorFields(error), migrationId }, 'autopilot: the window check failed');
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), WINDOW_CHECK_MS);
  try {
    return await run();
  } finally {
    clearInterval(timer);
  }
}

function renewLease(access: ClusterAccess, holder: string, leaseMs: number, onLease: ((held: boolean) => void) | undefined): { stop(): void } {
  const timer = setInterval(() => {
    void withCatalog(access, (catalog) => takeAutopilotLease(catalog, holder, leaseMs)).then((lease) => {
      onLease?.(lease.held);
      if (!lease.held) logger.error({ holder: lease.holder }, 'autopilot: the lease was taken by another autopilot');
    }).catch((error: unknown) => logger.warn({ ...errorFields(error) }, 'autopilot: the lease could not be renewed'));
  }, Math.max(250, leaseMs / 3));
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

async function journal(access: ClusterAccess, holder: string, kind: AutopilotDecisionKind, acted: boolean, summary: string, details: Record<string, unknown>, migrationId?: number): Promise<void> {
  await withCatalog(access, (catalog) => recordAutopilotDecision(catalog, { holder, kind, acted, summary, details, ...(migrationId !== undefined ? { migrationId } : {}) }));
}

/** The evaluation as journaled: triggers with their numbers, the plan, the nodes (not every slot). */
export function decisionDetails(evaluation: AutopilotEvaluation): Record<string, unknown> {
  const { slotLoads: _slotLoads, spaces: _spaces, plan, ...rest } = evaluation;
  return {
    ...rest,
    nodes: evaluation.nodes.map((node) => ({ ...node, ratio: Number.isFinite(node.ratio) ? node.ratio : null })),
    ...(plan ? { plan: { moves: plan.moves, unresolved: plan.unresolved, after: plan.after.map((node) => ({ node: node.node, load: node.load, ratio: Number.isFinite(node.ratio) ? node.ratio : null })) } } : {}),
  };
}

function clockOf(options: AutopilotRunOptions): () => Date {
  return options.clock ?? (() => new Date());
}

function throttleOf(settings: AutopilotSettings): { throttle?: { maxLatencyImpact?: number; copyBytesPerSecMax?: number } } {
  if (settings.maxLatencyImpact === undefined && settings.copyBytesPerSecMax === undefined) return {};
  return { throttle: {
    ...(settings.maxLatencyImpact !== undefined ? { maxLatencyImpact: settings.maxLatencyImpact } : {}),
    ...(settings.copyBytesPerSecMax !== undefined ? { copyBytesPerSecMax: settings.copyBytesPerSecMax } : {}),
  } };
}

/** throttleOf, with the WAL a move may retain bounded by half the free space of the nodes short of it. */
function headroomThrottle(settings: AutopilotSettings, evaluation: AutopilotEvaluation): { throttle: { maxLatencyImpact?: number; copyBytesPerSecMax?: number; walRetainedBytesMax: number } } {
  const short = evaluation.triggers.filter((trigger) => trigger.kind === 'headroom' && trigger.fired);
  const freeBytes = Math.min(...short.map((trigger) => (trigger.kind === 'headroom' && trigger.capacityBytes !== undefined ? trigger.capacityBytes - trigger.usedBytes : Infinity)));
  const walRetainedBytesMax = Math.max(1, Math.floor(Math.min(REPLICATION_WATCH_DEFAULT.walRetainedBytesMax, Math.max(0, freeBytes) / 2)));
  return { throttle: { ...throttleOf(settings).throttle, walRetainedBytesMax } };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
