import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { initialSlotMap, routingModulus, slotIds, slotModulus, splitSlotMap, type SlotMap } from '../../src/core/slotMap.js';
import { planRebalance, targetSlotCounts, type PlanInput, type PlannerNode } from '../../src/planner/index.js';

/**
 * The planner's two promises (invariant 6), restated for slots of unequal
 * size (issue 14) and checked on random split maps, weights, added and
 * drained nodes. Hash space is counted in units of the map's largest modulus
 * L: a slot of modulus m weighs L/m units; each node's target in units is
 * `targetSlotCounts(L, nodes, units now)` — its weighted share of L rounded
 * to a whole unit, exactly as slot counts are rounded on an equal map.
 *
 * 1. One-slot balance: every node with weight ends within one slot of its
 *    target — within the units of the map's largest slot (on an equal map,
 *    "within one slot") — and a drained node (weight 0) ends with nothing.
 * 2. Minimal movement: (a) for its outcome — no node both gives and takes,
 *    so the units moved are Σ max(0, before − after), which any plan ending
 *    with the same units per node must move at least; (b) against the ideal —
 *    the units moved exceed Σ max(0, before − target) (the equal-slot minimum,
 *    reached exactly when every slot weighs one unit) by less than one slot
 *    per donor with weight — the largest it gave: a donor gives only while
 *    above its target, so only its last slot overshoots; a drained donor
 *    gives exactly what it holds, its excess.
 */

const unequalMapInput = fc.record({
  modulus: fc.constantFrom(4, 8, 16, 32),
  nodeCount: fc.integer({ min: 1, max: 5 }),
  splits: fc.array(fc.nat(), { maxLength: 16 }),
  added: fc.integer({ min: 0, max: 3 }),
  drained: fc.boolean(),
  weights: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 8, maxLength: 8 }),
  bytes: fc.array(fc.nat({ max: 1_000_000 }), { minLength: 64, maxLength: 64 }),
}).map(({ modulus, nodeCount, splits, added, drained, weights, bytes }): PlanInput => {
  const names = Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`);
  let map: SlotMap = initialSlotMap(names, modulus);
  for (const pick of splits) {
    const ids = slotIds(map);
    map = splitSlotMap(map, ids[pick % ids.length]!);
  }
  const targets = [...names, ...Array.from({ length: added }, (_, i) => `new${i + 1}`)];
  const nodes: PlannerNode[] = targets.map((name, index) => ({ name, weight: drained && index === 0 && targets.length > 1 ? 0 : weights[index % weights.length]!, concurrencyMax: 2 }));
  const slotBytes = Array.from(map.owners, (owner, slot) => (owner === undefined ? 0 : bytes[slot % bytes.length]!));
  return { slotMap: map, nodes, slotBytes };
});

interface Outcome {
  unitsOf: (slot: number) => number;
  before: Map<string, number>;
  after: Map<string, number>;
  target: Map<string, number>;
  /** The units of the map's largest slot. */
  largestSlot: number;
  /** Per giving node, the units of the largest slot it gave. */
  largestGivenBy: Map<string, number>;
  moved: number;
  givers: Set<string>;
  takers: Set<string>;
}

function outcomeOf(input: PlanInput): Outcome {
  const plan = planRebalance(input);
  const map = input.slotMap;
  const largest = routingModulus(map);
  const unitsOf = (slot: number): number => largest / slotModulus(map, slot);
  const before = new Map<string, number>();
  const after = new Map<string, number>();
  const largestGivenBy = new Map<string, number>();
  const owners = [...map.owners];
  const givers = new Set<string>();
  const takers = new Set<string>();
  let moved = 0;
  for (const move of plan.moves) {
    expect(owners[move.slot]).toBe(move.from);
    owners[move.slot] = move.to;
    givers.add(move.from);
    largestGivenBy.set(move.from, Math.max(largestGivenBy.get(move.from) ?? 0, unitsOf(move.slot)));
    takers.add(move.to);
    moved += unitsOf(move.slot);
  }
  for (const slot of slotIds(map)) {
    const from = map.owners[slot]!;
    const to = owners[slot]!;
    before.set(from, (before.get(from) ?? 0) + unitsOf(slot));
    after.set(to, (after.get(to) ?? 0) + unitsOf(slot));
  }
  const target = targetSlotCounts(largest, input.nodes, before);
  const largestSlot = Math.max(...slotIds(map).map(unitsOf));
  return { unitsOf, before, after, target, largestSlot, largestGivenBy, moved, givers, takers };
}

describe('planner on unequal slots (hash share)', () => {
  it('one-slot balance: each node with weight ends within the largest slot of its target in units; drained nodes end empty', () => {
    fc.assert(fc.property(unequalMapInput, (input) => {
      const { after, target, largestSlot } = outcomeOf(input);
      for (const node of input.nodes) {
        const units = after.get(node.name) ?? 0;
        if (node.weight === 0) {
          expect(units).toBe(0);
          continue;
        }
        expect(Math.abs(units - (target.get(node.name) ?? 0))).toBeLessThanOrEqual(largestSlot);
      }
    }), { numRuns: 500 });
  });

  it('minimal movement for its outcome: no node gives and takes, so the units moved are Σ max(0, before − after)', () => {
    fc.assert(fc.property(unequalMapInput, (input) => {
      const { before, after, moved, givers, takers } = outcomeOf(input);
      expect([...givers].filter((name) => takers.has(name))).toEqual([]);
      const names = new Set([...before.keys(), ...after.keys()]);
      const lowerBound = [...names].reduce((sum, name) => sum + Math.max(0, (before.get(name) ?? 0) - (after.get(name) ?? 0)), 0);
      expect(moved).toBe(lowerBound);
    }), { numRuns: 500 });
  });

  it('minimal movement against the ideal: beyond Σ max(0, before − target), less than one slot per donor with weight', () => {
    fc.assert(fc.property(unequalMapInput, (input) => {
      const { before, target, largestGivenBy, moved, givers } = outcomeOf(input);
      const ideal = [...before.entries()].reduce((sum, [name, units]) => sum + Math.max(0, units - (target.get(name) ?? 0)), 0);
      const weightOf = new Map(input.nodes.map((node) => [node.name, node.weight]));
      const overshootMax = [...givers].filter((name) => (weightOf.get(name) ?? 0) > 0).reduce((sum, name) => sum + largestGivenBy.get(name)!, 0);
      expect(moved).toBeGreaterThanOrEqual(0);
      if (overshootMax === 0) expect(moved).toBeLessThanOrEqual(ideal);
      else expect(moved).toBeLessThan(ideal + overshootMax);
    }), { numRuns: 500 });
  });

  it('on an unsplit map every slot weighs one unit, and both bounds meet: exactly Σ max(0, before − target) slots move', () => {
    fc.assert(fc.property(unequalMapInput.map((input) => ({ ...input, slotMap: initialSlotMap([...new Set(input.slotMap.owners.filter((owner): owner is string => owner !== undefined))], input.slotMap.modulus) })), (input) => {
      const plain = { ...input, slotBytes: input.slotBytes.slice(0, input.slotMap.modulus) };
      const { before, target, moved } = outcomeOf(plain);
      const ideal = [...before.entries()].reduce((sum, [name, units]) => sum + Math.max(0, units - (target.get(name) ?? 0)), 0);
      expect(moved).toBe(ideal);
    }), { numRuns: 300 });
  });
});
