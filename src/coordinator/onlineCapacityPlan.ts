import { ReshardError } from '../core/errors.js';
import type { ReplicationSettings } from '../node/inspectNode.js';
import { batchesAtOnce, scheduleOnlineBatches, UNLIMITED_BATCHES } from './onlineSchedule.js';
import { onlineSettingProblems, type SettingProblem } from './onlineSettingProblems.js';
import { replicationCapacity, type ReplicationCapacity } from './replicationCapacity.js';

/** One node's share of an online plan: what the plan keeps alive on it at once, and what it allows. */
export interface NodeOnlineLoad {
  node: string;
  subscriptionsAtOnce: number;
  subscriptionsMax: number;
  publicationsAtOnce: number;
  publicationsMax: number;
  /** Initial copies it serves at once as a source. */
  copiesMax: number;
}

export interface OnlineCapacityPlan<M> {
  /** Rounds of batches of moves; empty when an error stands in the way. */
  rounds: M[][][];
  problems: (SettingProblem & { node: string })[];
  load: NodeOnlineLoad[];
}

/**
 * Fits an online plan's batches to what each node allows (pure): every node's
 * settings are judged for what the plan would like at once, and the batches
 * are scheduled within what the nodes have. With an error (a node that cannot
 * carry even one batch) there are no rounds.
 */
export function planOnlineCapacity<M extends { source: string; target: string; slot: number }>(
  moves: readonly M[],
  batchSlotsMax: number,
  settingsOf: ReadonlyMap<string, ReplicationSettings>,
  concurrencyOf: (node: string) => number,
  opened: readonly (readonly number[])[] = [],
): OnlineCapacityPlan<M> {
  const wanted = batchesAtOnce(scheduleOnlineBatches(moves, batchSlotsMax, () => UNLIMITED_BATCHES, opened));
  const problems: OnlineCapacityPlan<M>['problems'] = [];
  const capacities = new Map<string, ReplicationCapacity>();
  for (const [node, counts] of wanted) {
    const settings = settingsOf.get(node);
    if (!settings) throw new Error(`settings of node ${node} were read`);
    const need = { subscriptionsWanted: counts.subscriptions, publicationsWanted: counts.publications, concurrencyMax: concurrencyOf(node) };
    problems.push(...onlineSettingProblems(node, settings, need).map((problem) => ({ ...problem, node })));
    capacities.set(node, replicationCapacity(settings, need.concurrencyMax));
  }
  if (problems.some((problem) => problem.severity === 'error')) return { rounds: [], problems, load: [] };
  const rounds = scheduleOnlineBatches(moves, batchSlotsMax, (node) => capacities.get(node)!, opened);
  const atOnce = batchesAtOnce(rounds);
  const load = [...capacities].map(([node, capacity]) => ({
    node,
    subscriptionsAtOnce: atOnce.get(node)?.subscriptions ?? 0,
    subscriptionsMax: capacity.subscriptionsMax,
    publicationsAtOnce: atOnce.get(node)?.publications ?? 0,
    publicationsMax: capacity.publicationsMax,
    copiesMax: capacity.copiesMax,
  }));
  return { rounds, problems, load };
}

/** The first error of a capacity plan as the one line an operator acts on; undefined when there is none. */
export function capacityError(plan: OnlineCapacityPlan<unknown>): ReshardError | undefined {
  const error = plan.problems.find((problem) => problem.severity === 'error');
  return error ? new ReshardError('precondition', error.message, error.fix) : undefined;
}
