import { Counter, Gauge, Registry } from 'prom-client';
import type { AutopilotAction, AutopilotEvaluation } from '../admin/autopilotEvaluation.js';
import type { MigrationEvent } from '../plumbing/migrationEvents.js';

/** Every decision an evaluation can end in: the `reshard_autopilot_decision` gauge shows 1 for the latest. */
const AUTOPILOT_ACTIONS: readonly AutopilotAction[] = ['none', 'start-load', 'start-nodes', 'start-headroom', 'start-split', 'start-bytes', 'resume', 'wait', 'plan-only'];

/**
 * The Prometheus metrics of a running `reshard autopilot` (its `/metrics`),
 * on a registry of their own: whether it holds the lease, its latest
 * decision, triggers fired, migrations started, and each node's load against
 * its weighted share as it last measured. Fed by the autopilot's callbacks;
 * documented in the README.
 */
export class AutopilotMetrics {
  readonly registry = new Registry();
  private readonly leaseHeld = new Gauge({ name: 'reshard_autopilot_lease_held', help: '1 while this autopilot holds the lease (the active one), 0 while it waits for it', registers: [this.registry] });
  private readonly decision = new Gauge({ name: 'reshard_autopilot_decision', help: '1 for the action of the latest evaluation', labelNames: ['action'], registers: [this.registry] });
  private readonly evaluations = new Counter({ name: 'reshard_autopilot_evaluations_total', help: 'Evaluations by the action they ended in', labelNames: ['action'], registers: [this.registry] });
  private readonly lastEvaluation = new Gauge({ name: 'reshard_autopilot_last_evaluation_timestamp_seconds', help: 'When the latest evaluation ran (Unix time)', registers: [this.registry] });
  private readonly inWindow = new Gauge({ name: 'reshard_autopilot_in_window', help: '1 when the latest evaluation was inside the windows (or no window is set)', registers: [this.registry] });
  private readonly triggersFired = new Counter({ name: 'reshard_autopilot_triggers_fired_total', help: 'Triggers that fired, counted once per evaluation they fired in', labelNames: ['kind', 'node'], registers: [this.registry] });
  private readonly migrationsStarted = new Counter({ name: 'reshard_autopilot_migrations_started_total', help: 'Migrations this autopilot ran: started, or resumed after an interruption', labelNames: ['resumed'], registers: [this.registry] });
  private readonly migrationsFinished = new Counter({ name: 'reshard_autopilot_migrations_finished_total', help: 'Migrations this autopilot ran to their end, by final state', labelNames: ['state'], registers: [this.registry] });
  private readonly windowPauses = new Counter({ name: 'reshard_autopilot_migration_pauses_total', help: 'Pauses and resumes of the migration it runs (at a window\'s edge, or by an operator)', labelNames: ['control'], registers: [this.registry] });
  private readonly nodeLoad = new Gauge({ name: 'reshard_autopilot_node_load', help: 'The node\'s mean load over the measured periods (calls/s from routers, else scans+writes/s)', labelNames: ['node'], registers: [this.registry] });
  private readonly nodeShare = new Gauge({ name: 'reshard_autopilot_node_load_share', help: 'The node\'s share of the cluster\'s load (0..1)', labelNames: ['node'], registers: [this.registry] });
  private readonly nodeWeightedShare = new Gauge({ name: 'reshard_autopilot_node_weighted_share', help: 'The share of the load the node should carry by its weight (0..1)', labelNames: ['node'], registers: [this.registry] });
  private readonly nodeRatio = new Gauge({ name: 'reshard_autopilot_node_load_ratio', help: 'Load share / weighted share (1 = exactly its share); absent when it should carry nothing', labelNames: ['node'], registers: [this.registry] });

  constructor() {
    this.leaseHeld.set(0);
    for (const action of AUTOPILOT_ACTIONS) this.decision.set({ action }, 0);
    this.migrationsStarted.inc({ resumed: 'false' }, 0);
    this.migrationsStarted.inc({ resumed: 'true' }, 0);
  }

  setLeaseHeld(held: boolean): void {
    this.leaseHeld.set(held ? 1 : 0);
  }

  recordEvaluation(evaluation: AutopilotEvaluation): void {
    for (const action of AUTOPILOT_ACTIONS) this.decision.set({ action }, action === evaluation.action ? 1 : 0);
    this.evaluations.inc({ action: evaluation.action });
    this.lastEvaluation.set(Date.parse(evaluation.at) / 1000);
    this.inWindow.set(evaluation.inWindow ? 1 : 0);
    for (const trigger of evaluation.triggers) if (trigger.fired) this.triggersFired.inc({ kind: trigger.kind, node: trigger.node });
    // Only the nodes of this evaluation: one that left the cluster drops out.
    for (const gauge of [this.nodeLoad, this.nodeShare, this.nodeWeightedShare, this.nodeRatio]) gauge.reset();
    if (evaluation.periodsMeasured === 0) return;
    for (const node of evaluation.nodes) {
      this.nodeLoad.set({ node: node.node }, node.load);
      this.nodeShare.set({ node: node.node }, node.share);
      this.nodeWeightedShare.set({ node: node.node }, node.weightedShare);
      if (Number.isFinite(node.ratio)) this.nodeRatio.set({ node: node.node }, node.ratio);
    }
  }

  recordEvent(event: MigrationEvent): void {
    if (event.type === 'migration_started') this.migrationsStarted.inc({ resumed: String(event.resumed) });
    else if (event.type === 'migration_finished') this.migrationsFinished.inc({ state: event.state });
    else if (event.type === 'control') this.windowPauses.inc({ control: event.control });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
