import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { JournalEntry } from '../admin/clusterActivity.js';
import type { MoveRecord } from '../admin/clusterActivity.js';
import type { DashboardState } from './dashboardState.js';

/** Every state a migration gauge can show: the catalog's states, plus 'paused' and 'none'. */
const MIGRATION_STATES = ['none', 'running', 'paused', 'completed', 'failed', 'cancelled', 'rolled_back'] as const;

/** Per-slot write pauses are meant to be well under 200 ms; the buckets resolve that range. */
const PAUSE_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];

/**
 * The Prometheus metrics behind `GET /metrics`, on a registry of their own
 * (an application embedding reshard keeps its default registry clean).
 * Updated from each catalog poll; documented in the README.
 */
export class DashboardMetrics {
  readonly registry = new Registry();
  private readonly nodeSlots = new Gauge({ name: 'reshard_node_slots', help: 'Slots the node owns in the slot map', labelNames: ['node'], registers: [this.registry] });
  private readonly nodeBytes = new Gauge({ name: 'reshard_node_bytes', help: 'Bytes of the slots attached on the node (all sharded tables, with indexes and TOAST)', labelNames: ['node'], registers: [this.registry] });
  private readonly nodeHeadroom = new Gauge({ name: 'reshard_node_headroom_bytes', help: 'Capacity (configured, or the filesystem of a server on this machine) minus what the server uses', labelNames: ['node'], registers: [this.registry] });
  private readonly nodeUp = new Gauge({ name: 'reshard_node_up', help: '1 if the dashboard reached the node at its last probe', labelNames: ['node'], registers: [this.registry] });
  private readonly epoch = new Gauge({ name: 'reshard_slot_map_epoch', help: 'Epoch of the slot map', registers: [this.registry] });
  private readonly migrationState = new Gauge({ name: 'reshard_migration_state', help: '1 for the state of the latest migration (paused = running and held at a checkpoint)', labelNames: ['state'], registers: [this.registry] });
  private readonly migrationId = new Gauge({ name: 'reshard_migration_id', help: 'Id of the latest migration (0 if none)', registers: [this.registry] });
  private readonly movesInFlight = new Gauge({ name: 'reshard_moves_in_flight', help: 'Moves of the running migration that are being carried out now', registers: [this.registry] });
  private readonly bytesCopied = new Gauge({ name: 'reshard_migration_bytes_copied', help: 'Bytes copied so far by the latest migration, against its slots measured sizes', registers: [this.registry] });
  private readonly bytesTotal = new Gauge({ name: 'reshard_migration_bytes_total', help: 'Bytes the latest migration moves (sum of its slots measured sizes)', registers: [this.registry] });
  private readonly slotsDone = new Gauge({ name: 'reshard_migration_slots_done', help: 'Slots of the latest migration that have switched', registers: [this.registry] });
  private readonly slotsTotal = new Gauge({ name: 'reshard_migration_slots_total', help: 'Slots the latest migration moves', registers: [this.registry] });
  private readonly lag = new Gauge({ name: 'reshard_replication_lag_bytes', help: 'WAL bytes a moving batch\'s subscriber has not replayed yet, by stream', labelNames: ['stream'], registers: [this.registry] });
  private readonly pauses = new Histogram({ name: 'reshard_slot_write_pause_seconds', help: 'Per-slot write pause (freeze to switch) of switched online moves', buckets: PAUSE_BUCKETS_SECONDS, registers: [this.registry] });
  private readonly errors = new Counter({ name: 'reshard_errors_total', help: 'Errors by kind: step_failed_<step> from the journal, catalog_unreachable and node_unreachable from the dashboard\'s polls', labelNames: ['kind'], registers: [this.registry] });
  private readonly pollSeconds = new Histogram({ name: 'reshard_dashboard_catalog_poll_seconds', help: 'Wall time of one dashboard catalog poll (one read-only transaction)', buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [this.registry] });
  private readonly pausesSeen = new Set<string>();
  private failuresCountedUpToId = 0;

  update(state: DashboardState, moves: readonly MoveRecord[], failures: readonly JournalEntry[], failuresReadUpToId: number): void {
    this.nodeSlots.reset();
    this.nodeBytes.reset();
    this.nodeHeadroom.reset();
    this.nodeUp.reset();
    for (const node of state.nodes) {
      this.nodeSlots.set({ node: node.name }, node.slots);
      if (node.bytes !== null) this.nodeBytes.set({ node: node.name }, node.bytes);
      if (node.headroom_bytes !== null) this.nodeHeadroom.set({ node: node.name }, node.headroom_bytes);
      if (node.reachable !== null) this.nodeUp.set({ node: node.name }, node.reachable ? 1 : 0);
    }
    if (state.cluster) this.epoch.set(state.cluster.epoch);
    const migration = state.migration;
    const shown = !migration ? 'none' : migration.paused_since ? 'paused' : migration.state;
    for (const candidate of MIGRATION_STATES) this.migrationState.set({ state: candidate }, candidate === shown ? 1 : 0);
    this.migrationId.set(migration?.id ?? 0);
    this.movesInFlight.set(migration?.state === 'running' ? migration.slots_in_flight : 0);
    this.bytesCopied.set(migration?.bytes_copied ?? 0);
    this.bytesTotal.set(migration?.bytes_total ?? 0);
    this.slotsDone.set(migration?.slots_done ?? 0);
    this.slotsTotal.set(migration?.slots_total ?? 0);
    for (const move of moves) {
      const key = `${move.migrationId}:${move.slot}`;
      if (move.state !== 'done' || move.pauseMs === undefined || this.pausesSeen.has(key)) continue;
      this.pausesSeen.add(key);
      this.pauses.observe(move.pauseMs / 1000);
    }
    // Failed steps journaled since the last poll, oldest first, each counted once.
    for (const entry of failures) {
      if (entry.id <= this.failuresCountedUpToId) continue;
      this.errors.inc({ kind: `step_failed_${entry.step}` });
    }
    this.failuresCountedUpToId = Math.max(this.failuresCountedUpToId, failuresReadUpToId);
  }

  /** Every failed step up to this journal id is counted: the next poll reads the failures after it. */
  get failuresReadUpToId(): number {
    return this.failuresCountedUpToId;
  }

  setReplicationLag(byStream: ReadonlyMap<string, number>): void {
    this.lag.reset();
    for (const [stream, bytes] of byStream) this.lag.set({ stream }, bytes);
  }

  countError(kind: string): void {
    this.errors.inc({ kind });
  }

  observePoll(seconds: number): void {
    this.pollSeconds.observe(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
