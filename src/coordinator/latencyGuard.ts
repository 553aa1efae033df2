import { readReportedOwners } from '../catalog/reportedOwners.js';
import { readOtherSlotsLatency, type LatencyInWindow } from '../catalog/slotLoad.js';
import { interpolatedPercentileMs, LATENCY_BUCKETS } from '../core/latencyHistogram.js';
import type pg from 'pg';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { errorFields, log } from '../plumbing/log.js';
import type { NodeAddress } from '../plumbing/connectNode.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { CopyThrottle } from './copyThrottle.js';
import { nextGuardStep, type GuardControlState } from './latencyGuardControl.js';
import { NODE_PROBE_DEFAULT, NodeProbes } from './nodeProbes.js';

const logger = log('latency-guard');

export interface LatencyGuardLimits {
  /** Keep the other slots' p99 within this factor of the baseline (1.2: 20 % above it). */
  impactMax: number;
  /**
   * Latency the bound always allows above the baseline: on a fast cluster (p99 of 0.5 ms) 20 % is
   * 0.1 ms, within a scheduler's noise, and a bound no copy could keep.
   */
  impactSlackMs: number;
  /** The baseline: routers' reports over this long before the migration. */
  baselineWindowMs: number;
  /**
   * The p99 now: the routers' reports of the shortest recent window that holds `callsMin` calls,
   * at least two reporting periods (a router reports every 10 s by default; 1 s gives the guard a
   * fast loop), at most this long (or two periods, if longer).
   */
  currentWindowMsMax: number;
  /** Fewer calls than this in a window make no decision yet (a p99 of 50 calls is their maximum), unless the window is at its longest. */
  callsMin: number;
  pollMs: number;
  /** The rate copies start at: they speed up while the other slots' p99 stays well under the bound. */
  bytesPerSecStart: number;
  /** The slowest the guard lets copies go when it does not pause them. */
  bytesPerSecFloor: number;
  /** Longest one pause lasts before copies crawl at the floor for a step: a pause never stops a migration for good. */
  pauseMsMax: number;
  /** Nodes no router reports on are probed (`SELECT 1` every probeIntervalMs) for this long before copies start: their baseline. */
  probeBaselineMs: number;
  probeIntervalMs: number;
  /** The probes of this long (and since the last change) make a node's reading. */
  probeWindowMs: number;
}

export const LATENCY_GUARD_DEFAULT: Omit<LatencyGuardLimits, 'impactMax'> = {
  impactSlackMs: 1,
  baselineWindowMs: 120_000,
  currentWindowMsMax: 10_000,
  callsMin: 300,
  pollMs: 500,
  bytesPerSecStart: 2 * 1024 * 1024,
  bytesPerSecFloor: 256 * 1024,
  pauseMsMax: 30_000,
  probeBaselineMs: 3_000,
  probeIntervalMs: NODE_PROBE_DEFAULT.intervalMs,
  probeWindowMs: 2_000,
};

/** The probes' percentile the guard compares: with ~20 probes in a window, p99 would be their maximum, one hiccup. */
const PROBE_FRACTION = 0.9;

/** 1 call/s: the slowest traffic the guard sizes its window for (the window never exceeds currentWindowMsMax). */
const CALLS_PER_MS_MIN = 0.001;

/** A router's report of a period is in the catalog this long after the period ends (its write, a slow catalog). */
const REPORT_SETTLE_MS = 1_000;

/** The reporting period the guard assumes until it has seen one (the bench and the autopilot's routers use 1 s). */
const REPORT_PERIOD_MS_ASSUMED = 1_000;

/** One measure of what the application feels, now and before the work began. */
interface Reading {
  /** What was measured, for the journal ("other slots' p99", "node n2's probe p90"). */
  what: string;
  /** Over the last few seconds. */
  ms: number;
  /** Since the guard's baseline (the migration's start), when there is enough to tell; else the recent one. */
  sinceStartMs: number;
  baselineMs: number;
  samples: string;
}

/**
 * While a migration runs: compares what the application feels on the slots
 * it does not move with the same before it started, and keeps it within
 * `impactMax` × that baseline by the copy throttle's rate cap and, over the
 * bound, by pausing copies (and cutovers, which wait at the throttle too)
 * until it is back under (see latencyGuardControl.ts). What it compares: the
 * p99 of the calls routers saw on those slots (all those calls' latency
 * histograms added up, as the clients feel them); and for each of
 * `probeNodes` (the nodes that own those slots) that no router reported on
 * before the migration, the p90 of a probe query sent to it every
 * probeIntervalMs, against the same probe over probeBaselineMs while copies
 * wait. The worst of these decides. With neither, it says so and does
 * nothing. Returns a function that stops it (and lets paused copies go).
 */
export function guardLatency(options: {
  migrationId: number;
  access: ClusterAccess;
  throttle: CopyThrottle;
  movingSlots: readonly number[];
  /** The nodes that own slots not moving: probed where no router reports on them. */
  probeNodes?: readonly NodeAddress[];
  /** The operator's own cap (--max-copy-rate): the guard never lets copies go faster. */
  operatorCapBytesPerSec: number | undefined;
  limits: LatencyGuardLimits;
  emit: MigrationEventSink;
}): () => Promise<void> {
  const { migrationId, throttle, limits, emit } = options;
  const operatorCap = options.operatorCapBytesPerSec;
  let state: GuardControlState = { capBytesPerSec: Math.min(limits.bytesPerSecStart, operatorCap ?? Infinity), paused: false, pausedSinceMs: 0, crossed: false };
  let started = false;
  let routerBaselineMs: number | undefined;
  let probes: NodeProbes | undefined;
  const probeBaselineMs = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let changedAtMs = performance.now();
  let admittedAtChange = throttle.admittedBytes;
  let reportPeriodMs = REPORT_PERIOD_MS_ASSUMED;
  let callsPerMs = CALLS_PER_MS_MIN;
  let startedAtMs = 0;
  /** The other slots' calls since the start, as their reporting periods settle (each period read once). */
  const sinceStart = { counts: new Array<number>(LATENCY_BUCKETS).fill(0), calls: 0, settledToMs: 0 };
  // One catalog session for the guard's life (it reads every poll; a connection each time would be a new backend on the
  // catalog's node, often a node serving the very calls it watches); dropped on an error, opened again at the next poll.
  let catalogSession: pg.Client | undefined;
  const withSession = async <T>(work: (catalog: pg.Client) => Promise<T>): Promise<T> => {
    if (catalogSession === undefined) {
      const opened = await connectCatalog(options.access, 'reshard latency guard');
      // Stopped while connecting: nobody would end it.
      if (stopped) {
        await opened.end().catch(() => {});
        throw new Error('the latency guard stopped');
      }
      catalogSession = opened;
    }
    const session = catalogSession;
    try {
      return await work(session);
    } catch (error) {
      catalogSession = undefined;
      await session.end().catch(() => {});
      throw error;
    }
  };
  const read = (windowMs: number): Promise<LatencyInWindow | undefined> =>
    withSession((catalog) => readOtherSlotsLatency(catalog, { windowMs, excludedSlots: options.movingSlots }));
  /** The highest latency the bound allows over a baseline. */
  const limitMsOf = (baselineMs: number): number => Math.max(baselineMs * limits.impactMax, baselineMs + limits.impactSlackMs);
  // Copies start at the start rate, not at full speed: the first reading comes a reporting period later.
  throttle.setBytesPerSecMax(state.capBytesPerSec);
  // Nodes may need probing for a baseline: nothing is copied before it is known (a moment, when routers report on them all).
  if ((options.probeNodes ?? []).length > 0) throttle.pause('latency guard: measuring the baseline before copies start');

  const takeBaseline = async (): Promise<void> => {
    const routers = await read(limits.baselineWindowMs);
    routerBaselineMs = routers === undefined ? undefined : interpolatedPercentileMs(routers.counts, 0.99);
    const parts: string[] = [];
    if (routers !== undefined && routerBaselineMs !== undefined) {
      reportPeriodMs = routers.reportPeriodMsMax;
      // Traffic may have begun within the baseline window: a first guess, corrected by the first reading.
      callsPerMs = Math.max(routers.calls / limits.baselineWindowMs, CALLS_PER_MS_MIN);
      parts.push(`other slots' p99 ${routerBaselineMs.toFixed(2)} ms over ${routers.calls} calls (limit ${limitMsOf(routerBaselineMs).toFixed(2)} ms)`);
    }
    const reported = routers === undefined ? new Set<string>()
      : await withSession((catalog) => readReportedOwners(catalog, { windowMs: limits.baselineWindowMs, excludedSlots: options.movingSlots }));
    const unreported = (options.probeNodes ?? []).filter((node) => !reported.has(node.name));
    if (unreported.length > 0) {
      throttle.pause(`latency guard: probing ${unreported.map((node) => node.name).join(', ')} for a baseline before copies start`);
      probes = await NodeProbes.open(unreported, options.access.passwords, { ...NODE_PROBE_DEFAULT, intervalMs: limits.probeIntervalMs });
      if (stopped) {
        await probes.close();
        return;
      }
      const fromMs = performance.now();
      await new Promise((resolve) => setTimeout(resolve, limits.probeBaselineMs));
      for (const node of probes.nodes) {
        const baseline = probes.percentileSince(node, fromMs, PROBE_FRACTION);
        if (baseline === undefined) continue;
        probeBaselineMs.set(node, baseline.ms);
        parts.push(`node ${node}'s probe p90 ${baseline.ms.toFixed(2)} ms over ${baseline.probes} probes (limit ${limitMsOf(baseline.ms).toFixed(2)} ms)`);
      }
    }
    throttle.resume();
    started = true;
    changedAtMs = performance.now();
    startedAtMs = changedAtMs;
    sinceStart.settledToMs = startedAtMs;
    admittedAtChange = throttle.admittedBytes;
    if (parts.length === 0) {
      throttle.setBytesPerSecMax(operatorCap);
      emit({ type: 'throttle', migrationId, state: 'released', reason: 'latency guard inactive: no router reported load before the migration and no node could be probed' });
      stopped = true;
      return;
    }
    emit({ type: 'throttle', migrationId, state: 'released', reason: `latency guard: baseline ${parts.join('; ')}; copies start at ${kBps(state.capBytesPerSec)}` });
  };

  /** Adds the reporting periods that have settled since the last call (reports arrive at a period's end) to the since-start histogram. */
  const settleSinceStart = async (nowMs: number): Promise<void> => {
    const settleMs = reportPeriodMs + REPORT_SETTLE_MS;
    if (nowMs - settleMs <= sinceStart.settledToMs) return;
    const settled = await withSession((catalog) => readOtherSlotsLatency(catalog, {
      windowMs: nowMs - sinceStart.settledToMs, endsAgoMs: settleMs, excludedSlots: options.movingSlots,
    }));
    sinceStart.settledToMs = nowMs - settleMs;
    if (!settled) return;
    settled.counts.forEach((count, bucket) => { sinceStart.counts[bucket]! += count; });
    sinceStart.calls += settled.calls;
  };

  /** What the application feels now, by every measure the guard has; undefined while a measure needs a longer window since the last change. */
  const readNow = async (nowMs: number): Promise<Reading[] | undefined> => {
    const readings: Reading[] = [];
    const sinceChangeMs = nowMs - changedAtMs;
    if (probes && sinceChangeMs < limits.probeWindowMs) return undefined;
    if (routerBaselineMs !== undefined) {
      // The shortest recent window that holds enough calls for a p99 (at least two reporting periods):
      // the guard sees a change within a second or two, not after a long average has caught up.
      const windowMaxMs = Math.max(limits.currentWindowMsMax, 2 * reportPeriodMs);
      const windowMs = Math.min(windowMaxMs, Math.max(2 * reportPeriodMs, (limits.callsMin / callsPerMs) * 1.25));
      // A decision needs a window that began after the last one: what the copies did before it is no news.
      if (sinceChangeMs < windowMs) return undefined;
      const now = await read(windowMs);
      if (now) {
        callsPerMs = Math.max(now.calls / windowMs, CALLS_PER_MS_MIN);
        reportPeriodMs = Math.max(1, now.reportPeriodMsMax);
        if (now.calls < limits.callsMin && windowMs < windowMaxMs) return undefined;
        await settleSinceStart(nowMs);
        const recentMs = interpolatedPercentileMs(now.counts, 0.99)!;
        const sinceStartMs = sinceStart.calls >= limits.callsMin ? interpolatedPercentileMs(sinceStart.counts, 0.99)! : recentMs;
        readings.push({
          what: 'other slots\' p99', ms: recentMs, sinceStartMs, baselineMs: routerBaselineMs,
          samples: `${now.calls} calls in ${(windowMs / 1000).toFixed(1)} s; ${sinceStartMs.toFixed(2)} ms over ${sinceStart.calls} calls since the start`,
        });
      }
    }
    for (const [node, baselineMs] of probeBaselineMs) {
      const now = probes?.percentileSince(node, nowMs - limits.probeWindowMs, PROBE_FRACTION);
      const all = probes?.percentileSince(node, startedAtMs, PROBE_FRACTION);
      if (now) {
        const sinceStartMs = all?.ms ?? now.ms;
        readings.push({ what: `node ${node}'s probe p90`, ms: now.ms, sinceStartMs, baselineMs, samples: `${now.probes} probes in ${(limits.probeWindowMs / 1000).toFixed(1)} s; ${sinceStartMs.toFixed(2)} ms over ${all?.probes ?? 0} since the start` });
      }
    }
    return readings;
  };

  const pollOnce = async (): Promise<void> => {
    if (!started) {
      await takeBaseline();
      return;
    }
    const nowMs = performance.now();
    const readings = await readNow(nowMs);
    if (stopped || !readings || readings.length === 0) return;
    // Each measure against its own limit: the worst recent one and the worst since the start decide.
    const scaled = (ms: number, reading: Reading): number => ms / limitMsOf(reading.baselineMs);
    const worst = readings.reduce((a, b) => (scaled(b.ms, b) > scaled(a.ms, a) ? b : a));
    const worstSinceStart = Math.max(...readings.map((reading) => scaled(reading.sinceStartMs, reading)));
    const observedBytesPerSec = ((throttle.admittedBytes - admittedAtChange) / Math.max(1, nowMs - changedAtMs)) * 1000;
    const next = nextGuardStep(state, { recent: scaled(worst.ms, worst), sinceStart: worstSinceStart, observedBytesPerSec, nowMs }, {
      bytesPerSecFloor: Math.min(limits.bytesPerSecFloor, operatorCap ?? Infinity), bytesPerSecCeiling: operatorCap, pauseMsMax: limits.pauseMsMax,
    });
    if (next.change === 'same') return;
    state = next.state;
    changedAtMs = nowMs;
    admittedAtChange = throttle.admittedBytes;
    throttle.setBytesPerSecMax(state.capBytesPerSec);
    const ratio = worst.ms / worst.baselineMs;
    const measured = `${worst.what} ${worst.ms.toFixed(2)} ms = ${ratio.toFixed(2)}× baseline (limit ${(limitMsOf(worst.baselineMs) / worst.baselineMs).toFixed(2)}×, ${worst.samples})`;
    const reason = next.change === 'paused' ? `latency guard: ${measured}: copies and cutovers paused; they resume at ${kBps(state.capBytesPerSec)}`
      : next.change === 'crawl' ? `latency guard: ${measured} after a ${Math.round(limits.pauseMsMax / 1000)} s pause: copies go on at ${kBps(state.capBytesPerSec)} (the baseline may no longer hold)`
        : next.change === 'resumed' ? `latency guard: ${measured}: copies resume at ${kBps(state.capBytesPerSec)}`
          : next.change === 'slower' ? `latency guard: ${measured}: copies slow down to ${kBps(state.capBytesPerSec)}`
          : `latency guard: ${measured}: copies may go ${kBps(state.capBytesPerSec)}`;
    if (state.paused) throttle.pause(reason);
    else throttle.resume();
    logger.info({ migrationId, what: worst.what, ms: worst.ms, baselineMs: worst.baselineMs, ratio, capBytesPerSec: state.capBytesPerSec, paused: state.paused }, reason);
    emit({ type: 'throttle', migrationId, state: state.paused ? 'held' : 'released', reason });
  };

  const loop = (): void => {
    if (stopped) return;
    void pollOnce().catch((error: unknown) => {
      if (stopped) return;
      logger.warn({ ...errorFields(error), migrationId }, 'latency guard: the catalog could not be read');
      if (!started) {
        // No baseline, no guard: copies go on as the operator set them.
        started = true;
        stopped = true;
        throttle.resume();
        throttle.setBytesPerSecMax(operatorCap);
        emit({ type: 'throttle', migrationId, state: 'released', reason: 'latency guard inactive: its baseline could not be measured' });
        return;
      }
      // Blind, a pause is bounded all the same.
      if (state.paused && performance.now() - state.pausedSinceMs >= limits.pauseMsMax) {
        state = { ...state, paused: false, capBytesPerSec: Math.min(limits.bytesPerSecFloor, operatorCap ?? Infinity) };
        changedAtMs = performance.now();
        admittedAtChange = throttle.admittedBytes;
        throttle.setBytesPerSecMax(state.capBytesPerSec);
        throttle.resume();
        emit({ type: 'throttle', migrationId, state: 'released', reason: `latency guard: the routers' reports cannot be read; copies go on at ${kBps(state.capBytesPerSec)}` });
      }
    }).finally(() => {
      if (!stopped) timer = setTimeout(loop, limits.pollMs);
    });
  };
  loop();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    throttle.resume();
    await probes?.close();
    await catalogSession?.end().catch(() => {});
  };
}

function kBps(bytesPerSec: number): string {
  return `${Math.round(bytesPerSec / 1024)} kB/s`;
}
