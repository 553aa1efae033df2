import { assert } from '../core/assert.js';
import { isMixedSlotMap, slotCountsByNode } from '../core/slotMap.js';
import { chooseMoves, type ChosenMove } from './chooseMoves.js';
import { chooseWeightedMoves } from './chooseWeightedMoves.js';
import { scheduleWaves } from './schedule.js';
import { targetSlotCounts } from './targetCounts.js';
import { DRAINED_NODE_CONCURRENCY_MAX, type Plan, type PlanInput, type PlannerNode } from './types.js';
import { compareNames, validatePlanInput } from './validatePlanInput.js';
import type { SlotMap } from '../core/slotMap.js';

/**
 * The plan that balances the slot map over the target nodes by weight while
 * moving the fewest slots (invariant 6): target counts within one slot of each
 * weighted share, donors give their smallest slots, receivers stay within
 * capacity, moves are grouped into the fewest waves the concurrency limits
 * allow. Pure and deterministic: the same input, in any node order, gives the
 * same plan.
 */
export function planRebalance(input: PlanInput): Plan {
  const nodes = validatePlanInput(input);
  const { slotMap, slotBytes } = input;
  const nodeByName = new Map<string, PlannerNode>(nodes.map((node) => [node.name, node]));

  const currentCounts = slotCountsByNode(slotMap);
  let targetByNode: Map<string, number>;
  let chosen: ChosenMove[];
  if (isMixedSlotMap(slotMap)) {
    // Split slots weigh less than whole ones: balanced by hash-space share; the plan's targets are the counts that result.
    chosen = chooseWeightedMoves(slotMap, slotBytes, nodes, nodeByName);
    targetByNode = countsAfterMoves(slotMap, chosen, nodes);
  } else {
    targetByNode = targetSlotCounts(slotMap.modulus, nodes, currentCounts);
    chosen = chooseMoves(slotMap, slotBytes, targetByNode, nodeByName);
  }
  const concurrencyMaxOf = (name: string): number => nodeByName.get(name)?.concurrencyMax ?? DRAINED_NODE_CONCURRENCY_MAX;
  const { moves, waves } = scheduleWaves(chosen, concurrencyMaxOf);

  const plan: Plan = {
    modulus: slotMap.modulus,
    baseEpoch: slotMap.epoch,
    moves,
    targetSlotCounts: Object.fromEntries(targetByNode),
    slotsMoved: moves.length,
    bytesMoved: moves.reduce((total, move) => total + move.bytes, 0),
    bytesTotal: slotBytes.reduce((total, bytes) => total + (bytes ?? 0), 0),
    waves,
  };
  assertPlanValid(input, plan);
  return plan;
}

/**
 * What every plan must satisfy, checked on the way out: each slot moves at most
 * once and from its owner, the result has exactly the target counts, no wave
 * exceeds a node's concurrency and no node ends above its capacity.
 */
export function assertPlanValid(input: PlanInput, plan: Plan): void {
  const { slotMap, slotBytes } = input;
  const nodeByName = new Map(input.nodes.map((node) => [node.name, node]));
  const owners = [...slotMap.owners];
  const movedSlots = new Set<number>();
  const movesByWaveAndNode = new Map<string, number>();
  for (const move of plan.moves) {
    assert(!movedSlots.has(move.slot), `slot ${move.slot} moves twice`);
    movedSlots.add(move.slot);
    assert(owners[move.slot] === move.from, `slot ${move.slot} moves from "${move.from}", which does not own it`);
    assert(move.from !== move.to, `slot ${move.slot} moves onto its own owner`);
    assert(move.bytes === slotBytes[move.slot], `slot ${move.slot} has the wrong size in the plan`);
    assert(Number.isInteger(move.wave) && move.wave >= 0 && move.wave < plan.waves, `slot ${move.slot} has wave ${move.wave}`);
    owners[move.slot] = move.to;
    for (const node of [move.from, move.to]) {
      const key = `${move.wave}:${node}`;
      const count = (movesByWaveAndNode.get(key) ?? 0) + 1;
      movesByWaveAndNode.set(key, count);
      const limit = nodeByName.get(node)?.concurrencyMax ?? DRAINED_NODE_CONCURRENCY_MAX;
      assert(count <= limit, `node "${node}" is in ${count} moves in wave ${move.wave}, limit ${limit}`);
    }
  }
  const countsAfter = slotCountsByNode({ ...slotMap, owners });
  for (const [name, target] of Object.entries(plan.targetSlotCounts)) {
    assert((countsAfter.get(name) ?? 0) === target, `node "${name}" ends with ${countsAfter.get(name) ?? 0} slots, target ${target}`);
  }
  const bytesAfter = new Map<string, number>();
  owners.forEach((owner, slot) => {
    if (owner !== undefined) bytesAfter.set(owner, (bytesAfter.get(owner) ?? 0) + slotBytes[slot]!);
  });
  for (const node of input.nodes) {
    if (node.capacityBytes === undefined) continue;
    const bytes = bytesAfter.get(node.name) ?? 0;
    assert(bytes <= node.capacityBytes, `node "${node.name}" ends with ${bytes} bytes, capacity ${node.capacityBytes}`);
  }
}

/** Slot counts per node (every target node and every current owner) once `moves` are made. */
function countsAfterMoves(slotMap: SlotMap, moves: readonly ChosenMove[], nodes: readonly PlannerNode[]): Map<string, number> {
  const owners = [...slotMap.owners];
  for (const move of moves) owners[move.slot] = move.to;
  const counts = slotCountsByNode({ ...slotMap, owners });
  const names = [...new Set([...nodes.map((node) => node.name), ...slotCountsByNode(slotMap).keys()])].sort(compareNames);
  return new Map(names.map((name) => [name, counts.get(name) ?? 0]));
}
