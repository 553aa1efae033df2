/**
 * The JSON the dashboard serves (`GET /api/state`, and each `state` event of
 * `GET /api/events`). snake_case like every JSON reshard prints; bytes are
 * exact integers; times are ISO strings; no connection detail ever appears.
 * Documented in the README ("Dashboard → JSON API").
 */
export interface DashboardState {
  generated_at: string;
  /** Wall time of the last catalog poll (one read-only transaction), ms. */
  poll_ms: number;
  catalog: { reachable: boolean; error: string | null };
  cluster: { slots: number; epoch: number } | null;
  nodes: DashboardNode[];
  /** owners[slot] = node name (null: no slot has that id, after a split); frozen: slots whose writes are held right now. */
  /** moduli[slot]: that slot's modulus (null where no slot has the id); above the cluster's slot count for a split slot. */
  slot_map: { owners: (string | null)[]; frozen: number[]; moduli: (number | null)[] };
  migration: DashboardMigration | null;
  plan: DashboardPlan | null;
  history: DashboardHistoryEntry[];
  /** Newest first. */
  events: DashboardEvent[];
  actions: { token_required: true; rollback_available: boolean };
  /** Load per slot and node as routers reported it (null until read, or on a catalog without load reports). */
  load: DashboardLoad | null;
  autopilot: DashboardAutopilot | null;
}

export interface DashboardLoad {
  window_ms: number;
  routers: number;
  /** Index = slot: calls/s over the window; the highest p99 a router saw (0 without calls). */
  calls_per_sec: number[];
  p99_ms: number[];
  nodes: { node: string; load: number; share: number; weighted_share: number; ratio: number | null }[];
}

export interface DashboardAutopilot {
  /** The autopilot holding the lease now, or null when none runs. */
  holder: string | null;
  lease_until: string | null;
  /** Newest first. */
  decisions: { at: string; kind: string; acted: boolean; migration_id: number | null; summary: string }[];
}

export interface DashboardNode {
  name: string;
  state: string;
  weight: number;
  slots: number;
  /** Measured on the node every few seconds; null until measured or while unreachable. */
  bytes: number | null;
  capacity_bytes: number | null;
  /** capacity − what the server's databases use, when the capacity is configured or measurable (a server on this machine); null means unknown. */
  headroom_bytes: number | null;
  reachable: boolean | null;
  /** In the running migration: 'source', 'target', 'source+target', or null. */
  role: string | null;
  moves_in_flight: number;
}

export interface DashboardMove {
  slot: number;
  source: string;
  target: string;
  /** 'split' for a split (a split --to's target is its high child's node), 'merge', or 'move'. */
  kind: string;
  wave: number;
  state: string;
  step: string | null;
  bytes_total: number;
  bytes_copied: number;
  rows_copied: number;
  /** WAL bytes the target has not replayed (online moves while streaming); null when not streaming. */
  lag_bytes: number | null;
  /** The write pause so far while the slot is frozen, else the pause it saw (ms). */
  freeze_ms: number | null;
  pause_ms: number | null;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  /** What became of the move: 'switched', 'rolled back', 'failed', 'in progress', 'waiting', 'not started'. */
  outcome: string;
}

export interface DashboardMigration {
  id: number;
  state: string;
  mode: string;
  /** Operator request: 'run', 'pause' or 'cancel'. */
  control: string;
  /** The coordinator is holding at a checkpoint since this time (pause took effect). */
  paused_since: string | null;
  /** Running, but no coordinator holds it: `reshard resume` continues it. */
  interrupted: boolean;
  created_at: string;
  finished_at: string | null;
  error: string | null;
  bytes_total: number;
  bytes_copied: number;
  slots_total: number;
  /** Slots whose switch is done (their cleanup may still run). */
  slots_done: number;
  slots_in_flight: number;
  slots_rolled_back: number;
  /** Recent bytes per second (10 s window); 0 when nothing moves. */
  rate_bytes_per_sec: number;
  eta_seconds: number | null;
  /** Copy rate over time, one point per second at most (oldest first). */
  throughput: { at: string; bytes_per_sec: number }[];
  moves: DashboardMove[];
}

export interface DashboardPlan {
  /** 'current' before a migration; 'migration N' while one runs (its starting slot map). */
  basis: string;
  modulus: number;
  /** How many slots the map has (more than the modulus once slots are split). */
  slot_count: number;
  slots_moved: number;
  bytes_moved: number;
  bytes_total: number;
  waves: number;
  nodes_before: string[];
  nodes_after: string[];
  strategies: unknown;
  matrix: { nodes: string[]; cells: { slots: number; bytes: number }[][] };
}

export interface DashboardHistoryEntry {
  id: number;
  state: string;
  mode: string;
  created_at: string;
  finished_at: string | null;
  seconds: number;
  moves: number;
  slots_moved: number;
  bytes_moved: number;
  pause_ms_p50: number | null;
  pause_ms_p99: number | null;
  pause_ms_max: number | null;
  error: string | null;
  /** Every time it stopped failed, oldest first: a resumed migration keeps its earlier failures here after `error` clears. */
  failures: { at: string; error: string }[];
}

export interface DashboardEvent {
  id: string;
  at: string;
  migration_id: number;
  slot: number | null;
  step: string;
  action: string;
  level: 'info' | 'warn' | 'error';
  message: string;
}
