import { assert } from '../core/assert.js';
import { routingModulus, slotIds, slotModulus, type SlotMap } from '../core/slotMap.js';
import type { ChosenMove } from './chooseMoves.js';
import { targetSlotCounts } from './targetCounts.js';
import type { PlannerNode } from './types.js';
import { compareNames } from './validatePlanInput.js';

/** Bound on the improving moves of the local search (each strictly lowers the imbalance, so it ends anyway). */
const IMPROVEMENTS_MAX = 100_000;

/**
 * Which slots move, and where, for a slot map with split slots: balance by
 * hash-space share, not by slot count (a slot of modulus 2M holds half of
 * what a slot of M holds). Each slot weighs `routingModulus / its modulus`
 * units; every node's target in units is its weighted share of all units,
 * rounded as `targetSlotCounts` rounds slot counts.
 *
 * First a drained node (weight 0 or not in the target set) gives every slot,
 * heaviest first, each to the node furthest below its target that has room.
 * Then a local search: while moving some slot from a node above its target
 * to one below lowers the sum of squared deviations (true exactly when their
 * deviations differ by more than the slot's units), the best such move is
 * made (ties: fewer bytes, then slot, then name), each slot at most once
 * and no node both sending and receiving (the wave scheduler's rule).
 * Capacity is respected. What holds for unequal slots, in units of hash
 * space (proved by test/unit/unequalSlotsPlanner.property.test.ts): each node
 * with weight ends within the map's largest slot of its target; no node both
 * gives and takes, so no plan reaching the same shares moves less; and the
 * units moved exceed Σ max(0, now − target) (the equal-slot minimum) by less
 * than one slot per giving node with weight (only a donor's last slot can
 * overshoot its target).
 */
export function chooseWeightedMoves(
  slotMap: SlotMap,
  slotBytes: readonly number[],
  nodes: readonly PlannerNode[],
  nodeByName: ReadonlyMap<string, PlannerNode>,
): ChosenMove[] {
  const largest = routingModulus(slotMap);
  const unitsOf = (slot: number): number => largest / slotModulus(slotMap, slot);
  const ids = slotIds(slotMap);
  const owner = new Map(ids.map((slot) => [slot, slotMap.owners[slot]!]));
  const units = new Map<string, number>();
  const bytes = new Map<string, number>();
  for (const slot of ids) {
    units.set(owner.get(slot)!, (units.get(owner.get(slot)!) ?? 0) + unitsOf(slot));
    bytes.set(owner.get(slot)!, (bytes.get(owner.get(slot)!) ?? 0) + slotBytes[slot]!);
  }
  const target = targetSlotCounts(largest, nodes, units);
  const receivers = [...target.keys()].filter((name) => (nodeByName.get(name)?.weight ?? 0) > 0).sort(compareNames);
  const deviation = (name: string): number => (units.get(name) ?? 0) - (target.get(name) ?? 0);
  const room = (name: string): number => (nodeByName.get(name)?.capacityBytes ?? Infinity) - (bytes.get(name) ?? 0);
  // A node either sends or receives in one plan (the wave scheduler relies on it).
  const sending = new Set<string>();
  const receiving = new Set<string>();
  const move = (slot: number, to: string): void => {
    const from = owner.get(slot)!;
    sending.add(from);
    receiving.add(to);
    units.set(from, units.get(from)! - unitsOf(slot));
    bytes.set(from, bytes.get(from)! - slotBytes[slot]!);
    units.set(to, (units.get(to) ?? 0) + unitsOf(slot));
    bytes.set(to, (bytes.get(to) ?? 0) + slotBytes[slot]!);
    owner.set(slot, to);
  };

  const drained = new Set([...owner.values()].filter((name) => !receivers.includes(name)));
  const fromDrained = ids.filter((slot) => drained.has(owner.get(slot)!))
    .sort((a, b) => unitsOf(b) - unitsOf(a) || slotBytes[b]! - slotBytes[a]! || a - b);
  for (const slot of fromDrained) {
    const fitting = receivers.filter((name) => room(name) >= slotBytes[slot]!);
    const best = fitting.sort((a, b) => deviation(a) - deviation(b) || compareNames(a, b))[0];
    assert(best !== undefined, `slot ${slot} of a drained node fits on no node`);
    move(slot, best);
  }

  for (let improvements = 0; improvements < IMPROVEMENTS_MAX; improvements++) {
    let best: { slot: number; to: string; gain: number } | undefined;
    for (const slot of ids) {
      const from = owner.get(slot)!;
      const fromDeviation = deviation(from);
      if (fromDeviation <= 0 || receiving.has(from) || owner.get(slot) !== slotMap.owners[slot]) continue;
      const slotUnits = unitsOf(slot);
      for (const to of receivers) {
        if (to === from || sending.has(to) || room(to) < slotBytes[slot]!) continue;
        // Sum of squares before minus after: 2u(d_from − d_to) − 2u².
        const gain = 2 * slotUnits * (fromDeviation - deviation(to)) - 2 * slotUnits * slotUnits;
        if (gain <= 0) continue;
        if (!best || gain > best.gain || (gain === best.gain && (slotBytes[slot]! < slotBytes[best.slot]! || (slotBytes[slot] === slotBytes[best.slot] && slot < best.slot)))) {
          best = { slot, to, gain };
        }
      }
    }
    if (!best) break;
    move(best.slot, best.to);
  }

  return ids.filter((slot) => owner.get(slot) !== slotMap.owners[slot])
    .map((slot) => ({ slot, from: slotMap.owners[slot]!, to: owner.get(slot)!, bytes: slotBytes[slot]! }));
}
