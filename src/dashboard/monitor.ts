import type pg from 'pg';
import { assertCatalogCurrent, readClusterActivity, type ClusterActivity, type JournalEntry, type MigrationRecord, type MoveRecord } from '../admin/clusterActivity.js';
import { errorText, ReshardError } from '../core/errors.js';
import { slotModulus } from '../core/slotMap.js';
import { log } from '../plumbing/log.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { plannerInput } from '../admin/clusterSnapshot.js';
import { compareStrategies, planRebalance } from '../planner/index.js';
import type { DashboardEvent, DashboardMigration, DashboardMove, DashboardNode, DashboardPlan, DashboardState } from './dashboardState.js';
import { DashboardMetrics } from './metrics.js';
import { NodeProbe, type NodeMeasurement } from '../admin/nodeProbe.js';
import { readLoadOverview, type LoadOverview } from '../admin/loadOverview.js';
import { makeRedactor } from './redact.js';

export interface MonitorLimits {
  /** One read-only catalog transaction this often: the page's refresh rate. */
  catalogPollMs: number;
  /** Slot sizes on every node (and the plan) this often: sizes change slowly and cost a query per table. */
  nodePollMs: number;
  /** Replication lag on the sources of running online moves this often. */
  lagPollMs: number;
  /** Journal entries kept for the event log. */
  eventsMax: number;
  /** Throughput points kept (one per second at most): ten minutes. */
  throughputPointsMax: number;
}

export const MONITOR_LIMITS_DEFAULT: MonitorLimits = {
  catalogPollMs: 500,
  nodePollMs: 5_000,
  lagPollMs: 1_000,
  eventsMax: 200,
  throughputPointsMax: 600,
};

const logger = log('dashboard');

/** The heat map shows routers' reports over this long. */
const LOAD_WINDOW_MS = 60_000;
/** Autopilot decisions shown. */
const DECISIONS_SHOWN = 20;

/** The rate and ETA look at this much of the recent past. */
const RATE_WINDOW_MS = 10_000;

function iso(date: Date | undefined): string | null {
  return date ? date.toISOString() : null;
}

function moveOutcome(move: MoveRecord, migrationState: string, switched: boolean): string {
  // Switched is switched, while its cleanup still runs too (its step says so).
  if (switched && move.state !== 'rolled_back') return 'switched';
  switch (move.state) {
    case 'done': return 'switched';
    case 'rolled_back': return 'rolled back';
    case 'failed': return 'failed';
    case 'running': return 'in progress';
    case 'pending': return migrationState === 'running' ? 'waiting' : 'not started';
  }
}

/** One line per journal entry, for people; errors keep their clear message. */
function describeEntry(entry: JournalEntry, redact: (text: string) => string): Pick<DashboardEvent, 'level' | 'message'> {
  const error = typeof entry.detail?.['error'] === 'string' ? redact(entry.detail['error'] as string) : undefined;
  const where = entry.slot === undefined ? `migration ${entry.migrationId}` : `slot ${entry.slot}`;
  if (entry.slot === undefined && entry.step === 'pause') {
    if (entry.action === 'begin') return { level: 'warn', message: `migration ${entry.migrationId} paused: holding before its next step` };
    if (entry.action === 'done') return { level: 'info', message: `migration ${entry.migrationId} resumed after ${((Number(entry.detail?.['pausedMs']) || 0) / 1000).toFixed(1)} s` };
    return { level: 'error', message: `migration ${entry.migrationId} pause ended in failure: ${error ?? 'unknown error'}` };
  }
  if (entry.slot === undefined && entry.step === 'cancel') {
    if (entry.action === 'begin') return { level: 'warn', message: `migration ${entry.migrationId} cancelled: rolling back the moves that have not switched` };
    if (entry.action === 'done') return { level: 'info', message: `migration ${entry.migrationId} cancel finished: nothing left half-done` };
    return { level: 'error', message: `migration ${entry.migrationId} cancel left ${String(entry.detail?.['movesLeftHalfDone'] ?? 'some')} move(s) half-done: run \`reshard resume\`` };
  }
  switch (entry.action) {
    case 'begin': return { level: 'info', message: `${where}: ${entry.step} started` };
    case 'done': return { level: 'info', message: `${where}: ${entry.step} done` };
    case 'failed': return { level: 'error', message: `${where}: ${entry.step} failed: ${error ?? 'unknown error'}` };
    case 'undo': {
      const reason = typeof entry.detail?.['reason'] === 'string' ? redact(entry.detail['reason'] as string) : undefined;
      return entry.detail?.['attempt'] !== undefined
        ? { level: 'warn', message: `${where}: ${entry.step} abandoned (attempt ${String(entry.detail['attempt'])}), retrying: ${reason ?? ''}` }
        : { level: 'warn', message: `${where}: undoing ${entry.step}` };
    }
    case 'undone': return { level: 'info', message: `${where}: ${entry.step} undone` };
  }
}

/**
 * Watches the cluster for the dashboard: polls the catalog (one read-only
 * transaction every `catalogPollMs`), the nodes' slot sizes and the sources'
 * replication lag, and turns them into one `DashboardState`. Works for a
 * migration run by any process: everything comes from the catalog's tables
 * (moves, journal, slot map) and from the nodes themselves.
 */
export class DashboardMonitor {
  readonly metrics = new DashboardMetrics();
  private state: DashboardState;
  private stateJson = '';
  private catalog: pg.Client | undefined;
  private readonly probe: NodeProbe;
  private readonly redact: (text: string) => string;
  private readonly listeners = new Set<(state: DashboardState) => void>();
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;
  /** The last catalog poll failed: its error was logged once, and the recovery will be. */
  private catalogDown = false;
  private last: ClusterActivity | undefined;
  private measurements = new Map<string, NodeMeasurement>();
  private lagBySlot = new Map<number, number>();
  private plan: DashboardPlan | null = null;
  private loadOverview: LoadOverview | undefined;
  private throughput: { migrationId: number; samples: { atMs: number; bytes: number }[] } = { migrationId: 0, samples: [] };

  constructor(
    private readonly access: ClusterAccess,
    private readonly limits: MonitorLimits = MONITOR_LIMITS_DEFAULT,
  ) {
    this.probe = new NodeProbe(access.passwords);
    this.redact = makeRedactor(access.catalog.password ? [access.catalog.password] : []);
    this.state = this.compose(undefined, 0, null);
  }

  /** Checks the catalog once (a clear error if it is unreachable or not set up), then polls until `stop`. */
  async start(): Promise<void> {
    const catalog = await connectCatalog(this.access, 'reshard dashboard');
    try {
      await assertCatalogCurrent(catalog);
    } catch (error) {
      await catalog.end().catch(() => {});
      throw error;
    }
    this.catalog = catalog;
    await this.pollCatalog();
    await this.pollNodes();
    this.loop(() => this.pollCatalog(), this.limits.catalogPollMs);
    this.loop(() => this.pollNodes(), this.limits.nodePollMs);
    this.loop(() => this.pollLag(), this.limits.lagPollMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.listeners.clear();
    await this.catalog?.end().catch(() => {});
    await this.probe.close();
  }

  current(): DashboardState {
    return this.state;
  }

  /** Called with every changed state; returns the unsubscribe function. */
  subscribe(listener: (state: DashboardState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Polls never overlap: the next one is scheduled when this one ends. */
  private loop(poll: () => Promise<void>, everyMs: number): void {
    const index = this.timers.length;
    const tick = async (): Promise<void> => {
      if (this.stopped) return;
      await poll().catch(() => {});
      if (!this.stopped) this.timers[index] = setTimeout(() => void tick(), everyMs);
    };
    this.timers.push(setTimeout(() => void tick(), everyMs));
  }

  private async pollCatalog(): Promise<void> {
    const started = performance.now();
    try {
      this.catalog ??= await connectCatalog(this.access, 'reshard dashboard');
      const read = await readClusterActivity(this.catalog, this.limits.eventsMax, this.metrics.failuresReadUpToId);
      const pollMs = performance.now() - started;
      this.metrics.observePoll(pollMs / 1000);
      this.last = read;
      if (this.catalogDown) logger.info('the catalog answers again');
      this.catalogDown = false;
      this.sampleThroughput(read);
      this.publish(this.compose(read, pollMs, null));
    } catch (error) {
      const stale = this.catalog;
      this.catalog = undefined;
      await stale?.end().catch(() => {});
      this.metrics.countError('catalog_unreachable');
      const message = this.redact(errorText(error));
      // Once per outage, not every poll.
      if (!this.catalogDown) logger.error({ error: message }, 'the catalog poll failed; the page shows the last state read');
      this.catalogDown = true;
      this.publish(this.compose(this.last, performance.now() - started, message));
    }
  }

  private async pollNodes(): Promise<void> {
    const read = this.last;
    if (!read) return;
    this.probe.retain(new Set(read.nodes.map((node) => node.name)));
    const measured = await Promise.all(read.nodes.map(async (node) => [node.name, await this.probe.measure(node, read.tables)] as const));
    this.measurements = new Map(measured);
    for (const [, measurement] of measured) if (!measurement.reachable) this.metrics.countError('node_unreachable');
    this.plan = this.computePlan(read);
    // Routers' load over the last minute and the autopilot's state; a catalog without them keeps the page as it was.
    this.loadOverview = await readLoadOverview(this.access, read, LOAD_WINDOW_MS, DECISIONS_SHOWN).catch(() => undefined);
  }

  private async pollLag(): Promise<void> {
    const read = this.last;
    if (!read || read.latest?.state !== 'running' || read.latest.mode !== 'online') {
      this.lagBySlot = new Map();
      this.metrics.setReplicationLag(new Map());
      return;
    }
    const sources = new Set(read.moves.filter((move) => move.state === 'running').map((move) => move.source));
    const bySlot = new Map<number, number>();
    const byStream = new Map<string, number>();
    await Promise.all(read.nodes.filter((node) => sources.has(node.name)).map(async (node) => {
      const lag = await this.probe.lagBySlot(node);
      for (const [slot, bytes] of lag.bySlot) bySlot.set(slot, bytes);
      for (const [stream, bytes] of lag.byStream) byStream.set(stream, bytes);
    }));
    this.lagBySlot = bySlot;
    this.metrics.setReplicationLag(byStream);
  }

  /**
   * The plan as `reshard plan --compare` computes it: from the current slot
   * map, or while a migration runs, from the map it started with (its
   * switched slots given back to their sources), so the numbers stay those of
   * the plan that is running.
   */
  private computePlan(read: ClusterActivity): DashboardPlan | null {
    const running = read.latest?.state === 'running' ? read.latest : undefined;
    const owners = [...read.slotMap.owners];
    if (running) for (const move of read.moves) if (move.state === 'done') owners[move.slot] = move.source;
    // A slot's size is measured where its data is now: on its current owner.
    const slotBytes = Array.from(read.slotMap.owners, (owner, slot) => (owner === undefined ? 0 : this.measurements.get(owner)?.bytesBySlot.get(slot) ?? 0));
    try {
      const input = plannerInput({ nodes: read.nodes, tables: read.tables, slotMap: { ...read.slotMap, owners }, slotBytes });
      const comparison = compareStrategies(input);
      const plan = planRebalance(input);
      return {
        basis: running ? `migration ${running.id}` : 'current',
        modulus: plan.modulus,
        slot_count: comparison.slot_count,
        slots_moved: plan.slotsMoved,
        bytes_moved: plan.bytesMoved,
        bytes_total: plan.bytesTotal,
        waves: plan.waves,
        nodes_before: comparison.nodes_before,
        nodes_after: comparison.nodes_after,
        strategies: comparison.strategies,
        matrix: comparison.matrix,
      };
    } catch {
      // No node to own the slots (an empty cluster): nothing to plan.
      return null;
    }
  }

  private sampleThroughput(read: ClusterActivity): void {
    const latest = read.latest;
    if (!latest) return;
    if (this.throughput.migrationId !== latest.id) this.throughput = { migrationId: latest.id, samples: [] };
    if (latest.state !== 'running') return;
    const bytes = read.moves.filter((move) => move.state !== 'rolled_back').reduce((sum, move) => sum + move.bytesCopied, 0);
    const samples = this.throughput.samples;
    const now = Date.now();
    const previous = samples[samples.length - 1];
    if (previous && now - previous.atMs < 1_000) {
      previous.bytes = Math.max(previous.bytes, bytes);
      return;
    }
    samples.push({ atMs: now, bytes });
    if (samples.length > this.limits.throughputPointsMax) samples.splice(0, samples.length - this.limits.throughputPointsMax);
  }

  private rateBytesPerSec(): number {
    const samples = this.throughput.samples;
    const last = samples[samples.length - 1];
    if (!last) return 0;
    const first = samples.find((sample) => last.atMs - sample.atMs <= RATE_WINDOW_MS) ?? last;
    const seconds = (last.atMs - first.atMs) / 1000;
    return seconds > 0 ? Math.max(0, (last.bytes - first.bytes) / seconds) : 0;
  }

  private compose(read: ClusterActivity | undefined, pollMs: number, catalogError: string | null): DashboardState {
    const migration = read?.latest ? this.composeMigration(read, read.latest) : null;
    const active = migration?.state === 'running' ? migration.moves.filter((move) => move.state === 'running' || move.state === 'pending') : [];
    const nodes: DashboardNode[] = (read?.nodes ?? []).map((node) => {
      const measurement = this.measurements.get(node.name);
      const bytes = measurement?.reachable ? measurement.bytes : null;
      const isSource = active.some((move) => move.source === node.name);
      const isTarget = active.some((move) => move.target === node.name);
      return {
        name: node.name,
        state: node.state,
        weight: node.weight,
        slots: read!.slotMap.owners.filter((owner) => owner === node.name).length,
        bytes,
        capacity_bytes: measurement?.space?.capacityBytes ?? node.capacityBytes ?? null,
        headroom_bytes: measurement?.reachable && measurement.space?.capacityBytes !== undefined ? measurement.space.capacityBytes - measurement.space.usedBytes : null,
        reachable: measurement ? measurement.reachable : null,
        role: isSource && isTarget ? 'source+target' : isSource ? 'source' : isTarget ? 'target' : null,
        moves_in_flight: active.filter((move) => move.state === 'running' && (move.source === node.name || move.target === node.name)).length,
      };
    });
    const state: DashboardState = {
      generated_at: new Date().toISOString(),
      poll_ms: Math.round(pollMs * 10) / 10,
      catalog: { reachable: catalogError === null && read !== undefined, error: catalogError },
      cluster: read ? { slots: read.cluster.modulus, epoch: read.cluster.epoch } : null,
      nodes,
      slot_map: {
        owners: read ? Array.from(read.slotMap.owners, (owner) => owner ?? null) : [],
        frozen: read ? read.slotMap.states.flatMap((slotState, slot) => (slotState === 'frozen' ? [slot] : [])) : [],
        moduli: read ? Array.from(read.slotMap.owners, (owner, slot) => (owner === undefined ? null : slotModulus(read.slotMap, slot))) : [],
      },
      migration,
      plan: this.plan,
      history: (read?.history ?? []).map((entry) => ({
        id: entry.id, state: entry.state, mode: entry.mode, created_at: entry.createdAt.toISOString(), finished_at: iso(entry.finishedAt),
        seconds: Math.round(entry.seconds * 10) / 10, moves: entry.moves, slots_moved: entry.slotsMoved, bytes_moved: entry.bytesMoved,
        pause_ms_p50: entry.pauseMsP50 ?? null, pause_ms_p99: entry.pauseMsP99 ?? null, pause_ms_max: entry.pauseMsMax ?? null,
        error: entry.error ? this.redact(entry.error) : null,
        failures: entry.failures.map((failure) => ({ at: failure.at.toISOString(), error: this.redact(failure.error) })),
      })),
      // Newest first by time: parallel batches journal close together, and a reader follows the clock.
      events: [...(read?.journal ?? [])].sort((a, b) => b.at.getTime() - a.at.getTime() || b.id - a.id).map((entry) => ({
        id: String(entry.id), at: entry.at.toISOString(), migration_id: entry.migrationId, slot: entry.slot ?? null,
        step: entry.step, action: entry.action, ...describeEntry(entry, this.redact),
      })),
      actions: { token_required: true, rollback_available: true },
      load: this.loadOverview ? {
        window_ms: this.loadOverview.windowMs, routers: this.loadOverview.routers,
        calls_per_sec: this.loadOverview.callsPerSecBySlot.map((value) => Math.round(value * 10) / 10),
        p99_ms: this.loadOverview.p99MsBySlot.map((value) => Math.round(value * 100) / 100),
        nodes: this.loadOverview.nodes.map((node) => ({ node: node.node, load: Math.round(node.load * 10) / 10, share: node.share, weighted_share: node.weightedShare, ratio: Number.isFinite(node.ratio) ? node.ratio : null })),
      } : null,
      autopilot: this.loadOverview ? {
        holder: this.loadOverview.autopilot?.holder ?? null, lease_until: iso(this.loadOverview.autopilot?.leaseUntil),
        decisions: this.loadOverview.decisions.map((decision) => ({ at: decision.at.toISOString(), kind: decision.kind, acted: decision.acted, migration_id: decision.migrationId ?? null, summary: this.redact(decision.summary) })),
      } : null,
    };
    if (read) this.metrics.update(state, read.moves, read.failures, read.failuresReadUpToId);
    return state;
  }

  private composeMigration(read: ClusterActivity, latest: MigrationRecord): DashboardMigration {
    const running = latest.state === 'running';
    const moves: DashboardMove[] = read.moves.map((move) => {
      const freezeAge = read.freezeAges.get(move.slot);
      return {
        slot: move.slot, source: move.source, target: move.target, kind: move.kind ?? 'move', wave: move.wave, state: move.state, step: move.step ?? null,
        bytes_total: move.bytesTotal, bytes_copied: move.bytesCopied, rows_copied: move.rowsCopied,
        lag_bytes: running && move.state === 'running' ? this.lagBySlot.get(move.slot) ?? null : null,
        freeze_ms: freezeAge !== undefined && move.state === 'running' ? Math.round(freezeAge) : move.pauseMs !== undefined ? Math.round(move.pauseMs * 10) / 10 : null,
        pause_ms: move.pauseMs !== undefined ? Math.round(move.pauseMs * 10) / 10 : null,
        started_at: iso(move.startedAt), finished_at: iso(move.finishedAt),
        error: move.error ? this.redact(move.error) : null,
        outcome: moveOutcome(move, latest.state, read.switched.has(move.slot)),
      };
    });
    const pauseEntry = read.controlEntry;
    const pausedSince = running && read.control === 'pause' && pauseEntry?.step === 'pause' && pauseEntry.action === 'begin' ? pauseEntry.at.toISOString() : null;
    const bytesCopied = moves.filter((move) => move.state !== 'rolled_back').reduce((sum, move) => sum + move.bytes_copied, 0);
    const bytesTotal = moves.reduce((sum, move) => sum + move.bytes_total, 0) || latest.bytesTotal;
    const rate = running && this.throughput.migrationId === latest.id ? this.rateBytesPerSec() : 0;
    const samples = this.throughput.migrationId === latest.id ? this.throughput.samples : [];
    return {
      id: latest.id,
      state: latest.state,
      mode: latest.mode,
      control: read.control,
      paused_since: pausedSince,
      interrupted: running && !read.held,
      created_at: latest.createdAt.toISOString(),
      finished_at: iso(latest.finishedAt),
      error: latest.error ? this.redact(latest.error) : null,
      bytes_total: bytesTotal,
      bytes_copied: bytesCopied,
      slots_total: moves.length,
      slots_done: moves.filter((move) => move.state === 'done' || read.switched.has(move.slot)).length,
      slots_in_flight: moves.filter((move) => move.state === 'running').length,
      slots_rolled_back: moves.filter((move) => move.state === 'rolled_back').length,
      rate_bytes_per_sec: Math.round(rate),
      eta_seconds: running && rate > 0 && !pausedSince ? Math.round((bytesTotal - bytesCopied) / rate) : null,
      throughput: samples.slice(1).map((sample, index) => ({
        at: new Date(sample.atMs).toISOString(),
        bytes_per_sec: Math.max(0, Math.round((sample.bytes - samples[index]!.bytes) / Math.max(0.001, (sample.atMs - samples[index]!.atMs) / 1000))),
      })),
      moves,
    };
  }

  /** Tells listeners only when something other than the clock changed. */
  private publish(state: DashboardState): void {
    this.state = state;
    const { generated_at: _at, poll_ms: _ms, ...content } = state;
    const json = JSON.stringify(content);
    if (json === this.stateJson) return;
    this.stateJson = json;
    for (const listener of this.listeners) listener(state);
  }
}
