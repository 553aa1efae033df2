import { routingModulus, slotIds, slotModulus, type SlotMap } from '../core/slotMap.js';
import type { ChosenMove } from './chooseMoves.js';
import { targetSlotCounts } from './targetCounts.js';
import type { PlannerNode } from './types.js';
import { compareNames } from './validatePlanInput.js';

/**
 * Which slots move, and where, for a slot map with split slots: balance by
 * hash-space share, not by slot count (a slot of modulus 2M holds half of
 * what a slot of M holds). Each slot weighs `routingModulus / its modulus`
 * units; every node's target in units is its weighted share of all units,
 * rounded as `targetSlotCounts` rounds slot counts. A node above its target
 * gives slots that fit in its excess (smallest bytes first, then slot), and
 * each goes, heaviest first, to the receiver with the most units still
 * needed that it does not overshoot and whose capacity it fits.
 *
 * Greedy: with unequal slots a node may end within one slot's units of its
 * target rather than exactly on it, and the minimal-movement property of the
 * equal-slot planner is not proved for this case (issue 14).
 */
export function chooseWeightedMoves(
  slotMap: SlotMap,
  slotBytes: readonly number[],
  nodes: readonly PlannerNode[],
  nodeByName: ReadonlyMap<string, PlannerNode>,
): ChosenMove[] {
  const largest = routingModulus(slotMap);
  const unitsOf = (slot: number): number => largest / slotModulus(slotMap, slot);
  const unitsByOwner = new Map<string, number>();
  const bytesByOwner = new Map<string, number>();
  const slotsByOwner = new Map<string, number[]>();
  for (const slot of slotIds(slotMap)) {
    const owner = slotMap.owners[slot]!;
    unitsByOwner.set(owner, (unitsByOwner.get(owner) ?? 0) + unitsOf(slot));
    bytesByOwner.set(owner, (bytesByOwner.get(owner) ?? 0) + slotBytes[slot]!);
    slotsByOwner.set(owner, [...(slotsByOwner.get(owner) ?? []), slot]);
  }
  const targetUnits = targetSlotCounts(largest, nodes, unitsByOwner);

  const released: { slot: number; from: string; bytes: number; units: number }[] = [];
  for (const [name, target] of [...targetUnits].sort(([a], [b]) => compareNames(a, b))) {
    let excess = (unitsByOwner.get(name) ?? 0) - target;
    const smallestFirst = [...(slotsByOwner.get(name) ?? [])].sort((a, b) => slotBytes[a]! - slotBytes[b]! || a - b);
    for (const slot of smallestFirst) {
      if (excess <= 0) break;
      // A drained node (target 0) gives every slot; another gives only what keeps it at or above its target.
      if (unitsOf(slot) > excess && target > 0) continue;
      released.push({ slot, from: name, bytes: slotBytes[slot]!, units: unitsOf(slot) });
      excess -= unitsOf(slot);
    }
  }

  const receivers = [...targetUnits]
    .filter(([name, target]) => target > (unitsByOwner.get(name) ?? 0) && nodeByName.has(name))
    .map(([name, target]) => ({
      name,
      needUnits: target - (unitsByOwner.get(name) ?? 0),
      roomBytes: (nodeByName.get(name)!.capacityBytes ?? Infinity) - (bytesByOwner.get(name) ?? 0),
    }));
  const moves: ChosenMove[] = [];
  released.sort((a, b) => b.units - a.units || b.bytes - a.bytes || a.slot - b.slot);
  for (const item of released) {
    const fitting = receivers.filter((receiver) => receiver.roomBytes >= item.bytes && receiver.name !== item.from);
    const drained = !nodeByName.has(item.from) || nodeByName.get(item.from)!.weight === 0;
    // A drained node's slot must go somewhere even if it overshoots a receiver.
    const candidates = fitting.filter((receiver) => receiver.needUnits >= item.units);
    const pool = candidates.length > 0 ? candidates : drained ? fitting : [];
    const best = pool.sort((a, b) => b.needUnits - a.needUnits || compareNames(a.name, b.name))[0];
    if (!best) continue;
    best.needUnits -= item.units;
    best.roomBytes -= item.bytes;
    moves.push({ slot: item.slot, from: item.from, to: best.name, bytes: item.bytes });
  }
  return moves;
}
