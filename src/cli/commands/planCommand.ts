import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import { HEADROOM_FRACTION_DEFAULT, nodesOfUnknownCapacity, plannerInput, readClusterForPlan } from '../../admin/clusterSnapshot.js';
import { badInput } from '../../core/errors.js';
import { initialSlotMap } from '../../core/slotMap.js';
import { formatBytes } from '../../core/bytes.js';
import { capacityUnknown, capacityUnknownWarning, compareStrategies, formatComparison, formatMovementMatrix, planRebalance, type Comparison, type Plan, type PlanInput } from '../../planner/index.js';
import { assertSlotCount } from '../../admin/initCluster.js';
import type { Output } from '../output.js';
import { parseWholeNumber } from '../parseNumbers.js';

export interface PlanCommandOptions {
  nodes?: string;
  add?: string;
  remove?: string;
  slots?: string;
  compare?: boolean;
}

/** A hypothetical cluster of n equal nodes with equal slots: `--nodes 3 --add 1 --slots 256`. */
export function hypotheticalPlanInput(options: PlanCommandOptions): PlanInput {
  const nodeCount = parseWholeNumber(options.nodes, '--nodes', 1);
  const added = parseWholeNumber(options.add, '--add', 0, 0);
  const removed = parseWholeNumber(options.remove, '--remove', 0, 0);
  const slots = parseWholeNumber(options.slots, '--slots', 1, 256);
  assertSlotCount(slots);
  if (removed >= nodeCount + added) {
    throw badInput(`--remove ${removed} would leave no node of ${nodeCount + added}`, 'remove fewer nodes than the cluster has');
  }
  const before = Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`);
  const after = [...before.slice(0, nodeCount - removed), ...Array.from({ length: added }, (_, i) => `n${nodeCount + i + 1}`)];
  return {
    slotMap: initialSlotMap(before, slots),
    nodes: after.map((name) => ({ name, weight: 1, concurrencyMax: 2 })),
    slotBytes: new Array<number>(slots).fill(0),
  };
}

export async function planCommand(output: Output, options: PlanCommandOptions, access: () => ClusterAccess): Promise<void> {
  const hypothetical = options.nodes !== undefined || options.add !== undefined || options.remove !== undefined;
  const snapshot = hypothetical ? undefined : await readClusterForPlan(access());
  const input = snapshot ? plannerInput(snapshot) : hypotheticalPlanInput(options);
  const comparison = compareStrategies(input);
  const plan = planRebalance(input);
  // The plan itself ignores disk space (`rebalance` applies the headroom); a node the headroom cannot protect is said now.
  const involved = snapshot ? snapshot.nodes.filter((node) => plan.moves.some((move) => move.from === node.name || move.to === node.name)) : [];
  const headroomUnknown = involved.length > 0 ? await nodesOfUnknownCapacity(involved, access().passwords) : [];
  if (headroomUnknown.length > 0) {
    const warning = capacityUnknownWarning(headroomUnknown, HEADROOM_FRACTION_DEFAULT);
    output.warn(`${warning.message}. Fix: ${warning.fix}`);
  }
  output.result({ ...planJson(comparison, plan, options.compare ?? false), ...(snapshot ? { headroom_unknown: headroomUnknown } : {}) });
  output.text(describePlan(plan));
  output.text();
  // The comparison ends with the movement matrix; print it once.
  output.text(options.compare ? formatComparison(comparison) : formatMovementMatrix(comparison.matrix));
}

export function describePlan(plan: Plan): string {
  if (plan.moves.length === 0) return `The cluster is balanced: no slot needs to move (${plan.modulus} slots).`;
  const counts = Object.entries(plan.targetSlotCounts).map(([name, count]) => `${name}=${count}`).join(' ');
  const bytes = plan.bytesTotal > 0 ? ` (${formatBytes(plan.bytesMoved)} of ${formatBytes(plan.bytesTotal)})` : '';
  return `Plan: move ${plan.slotsMoved} of ${plan.modulus} slots${bytes} in ${plan.waves} wave(s). Slots after: ${counts}`;
}

export function planJson(comparison: Comparison, plan: Plan, includeStrategies: boolean): Record<string, unknown> {
  return {
    modulus: plan.modulus,
    base_epoch: plan.baseEpoch,
    slots_moved: plan.slotsMoved,
    bytes_moved: plan.bytesMoved,
    bytes_total: plan.bytesTotal,
    waves: plan.waves,
    target_slot_counts: plan.targetSlotCounts,
    moves: plan.moves,
    ...(includeStrategies ? { nodes_before: comparison.nodes_before, nodes_after: comparison.nodes_after, strategies: comparison.strategies } : {}),
    matrix: comparison.matrix,
  };
}
