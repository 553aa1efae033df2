import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReshardError } from '../../src/core/errors.js';
import { initialSlotMap, slotCountsByNode, type SlotMap } from '../../src/core/slotMap.js';
import { DRAINED_NODE_CONCURRENCY_MAX, planRebalance, type Plan, type PlanInput, type PlannerNode } from '../../src/planner/index.js';

/**
 * Random topologies: 1–8 nodes before, some removed (left out or weight 0),
 * up to 3 added, weights whole or quarters, M up to 1024, slot maps balanced,
 * uniform or skewed, slot sizes zero, equal, uniform or heavy-tailed, and the
 * target nodes listed in random order. A seeded generator builds the big
 * arrays so that a run stays fast; the seed and shape are what fast-check shrinks.
 */
interface Shape {
  seed: number;
  modulus: number;
  beforeCount: number;
  addedCount: number;
  ownersMode: 'round-robin' | 'uniform' | 'skewed' | 'one-node';
  bytesMode: 'zero' | 'equal' | 'uniform' | 'heavy-tailed';
}

const shapeArb: fc.Arbitrary<Shape> = fc.record({
  seed: fc.integer(),
  modulus: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(256, 1024), fc.integer({ min: 1, max: 1024 })),
  beforeCount: fc.integer({ min: 1, max: 8 }),
  addedCount: fc.integer({ min: 0, max: 3 }),
  ownersMode: fc.constantFrom('round-robin', 'uniform', 'skewed', 'one-node'),
  bytesMode: fc.constantFrom('zero', 'equal', 'uniform', 'heavy-tailed'),
});

function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function scenario(shape: Shape): PlanInput {
  const random = randomSource(shape.seed);
  const pick = (n: number): number => Math.floor(random() * n);
  const before = Array.from({ length: shape.beforeCount }, (_, i) => `n${i}`);
  const added = Array.from({ length: shape.addedCount }, (_, i) => `new${i}`);

  const owners = (() => {
    switch (shape.ownersMode) {
      case 'round-robin':
        return [...initialSlotMap(before, shape.modulus).owners];
      case 'uniform':
        return Array.from({ length: shape.modulus }, () => before[pick(before.length)]!);
      case 'skewed':
        return Array.from({ length: shape.modulus }, () => before[Math.floor(random() ** 3 * before.length)]!);
      case 'one-node':
        return new Array<string>(shape.modulus).fill(before[0]!);
    }
  })();
  const slotBytes = Array.from({ length: shape.modulus }, () => {
    switch (shape.bytesMode) {
      case 'zero':
        return 0;
      case 'equal':
        return 4096;
      case 'uniform':
        return pick(1_000_000);
      case 'heavy-tailed':
        return Math.floor(1000 / (random() + 0.001) ** 2);
    }
  });

  const nodes: PlannerNode[] = [];
  for (const name of [...before, ...added]) {
    const fate = random();
    const isNew = name.startsWith('new');
    if (!isNew && fate < 0.15) continue; // removed: absent from the target set
    const weight = !isNew && fate < 0.25 ? 0 : random() < 0.3 ? (1 + pick(12)) / 4 : 1 + pick(5);
    nodes.push({ name, weight, concurrencyMax: 1 + pick(4) });
  }
  if (!nodes.some((node) => node.weight > 0)) nodes.push({ name: 'rescue', weight: 1, concurrencyMax: 1 });
  // Shuffle: the plan must not depend on the listed order.
  for (let i = nodes.length - 1; i > 0; i--) {
    const j = pick(i + 1);
    [nodes[i], nodes[j]] = [nodes[j]!, nodes[i]!];
  }
  const slotMap: SlotMap = { modulus: shape.modulus, epoch: 1 + pick(100), owners };
  return { slotMap, nodes, slotBytes };
}

function ownersAfter(input: PlanInput, plan: Plan): string[] {
  const owners = input.slotMap.owners.map((owner) => owner!);
  for (const move of plan.moves) owners[move.slot] = move.to;
  return owners;
}

/** Weights are whole or quarters, so 4·weight is an exact integer and shares compare exactly. */
const quarterUnits = (weight: number): number => Math.round(weight * 4);

/** Brute force: the fewest moves of any target vector where every node is within one slot of its share. */
function fewestMovesByBruteForce(input: PlanInput): number {
  const modulus = input.slotMap.modulus;
  const current = slotCountsByNode(input.slotMap);
  const weighted = input.nodes.filter((node) => node.weight > 0);
  const weightTotal = weighted.reduce((t, node) => t + quarterUnits(node.weight), 0);
  const choices = weighted.map((node) => {
    const numerator = modulus * quarterUnits(node.weight);
    const floor = Math.floor(numerator / weightTotal);
    return numerator % weightTotal === 0 ? [floor] : [floor, floor + 1];
  });
  let best = Infinity;
  const visit = (i: number, assigned: number, moves: number): void => {
    if (i === weighted.length) {
      if (assigned !== modulus) return;
      // Nodes without weight (absent or 0) give up everything they hold.
      let drained = 0;
      for (const [name, count] of current) if (!weighted.some((node) => node.name === name)) drained += count;
      best = Math.min(best, moves + drained);
      return;
    }
    for (const target of choices[i]!) {
      visit(i + 1, assigned + target, moves + Math.max(0, (current.get(weighted[i]!.name) ?? 0) - target));
    }
  };
  visit(0, 0, 0);
  return best;
}

const runs = { numRuns: 150 };

describe('planRebalance properties', () => {
  it('(a) every node ends within one slot of its weighted share; weight 0 and absent nodes own nothing', () => {
    fc.assert(
      fc.property(shapeArb, (shape) => {
        const input = scenario(shape);
        const plan = planRebalance(input);
        const counts = slotCountsByNode({ ...input.slotMap, owners: ownersAfter(input, plan) });
        const weightTotal = input.nodes.reduce((t, node) => t + quarterUnits(node.weight), 0);
        for (const node of input.nodes) {
          const count = counts.get(node.name) ?? 0;
          // |count − M·w/W| < 1, multiplied through by W.
          expect(Math.abs(count * weightTotal - input.slotMap.modulus * quarterUnits(node.weight))).toBeLessThan(weightTotal);
          if (node.weight === 0) expect(count).toBe(0);
        }
        for (const [name, count] of counts) {
          if (count > 0) expect(input.nodes.find((node) => node.name === name)?.weight ?? 0).toBeGreaterThan(0);
        }
      }),
      runs,
    );
  });

  it('(b) moves the fewest slots any balanced target allows, each donor giving its smallest slots', () => {
    fc.assert(
      fc.property(shapeArb, (shape) => {
        const input = scenario(shape);
        const plan = planRebalance(input);
        expect(plan.slotsMoved).toBe(fewestMovesByBruteForce(input));

        const { owners } = input.slotMap;
        for (const donor of new Set(plan.moves.map((move) => move.from))) {
          const given = plan.moves.filter((move) => move.from === donor).map((move) => move.slot).sort((x, y) => x - y);
          const smallest = owners
            .flatMap((owner, slot) => (owner === donor ? [slot] : []))
            .sort((x, y) => input.slotBytes[x]! - input.slotBytes[y]! || x - y)
            .slice(0, given.length)
            .sort((x, y) => x - y);
          expect(given).toEqual(smallest);
        }
      }),
      runs,
    );
  });

  it('(c) is deterministic and independent of the order of the nodes', () => {
    fc.assert(
      fc.property(shapeArb, (shape) => {
        const input = scenario(shape);
        const plan = planRebalance(input);
        expect(planRebalance(input)).toEqual(plan);
        expect(planRebalance({ ...input, nodes: [...input.nodes].reverse() })).toEqual(plan);
      }),
      runs,
    );
  });

  it('(d) waves respect every concurrencyMax, use the fewest waves possible, and move each slot once from its owner', () => {
    fc.assert(
      fc.property(shapeArb, (shape) => {
        const input = scenario(shape);
        const plan = planRebalance(input);
        const limitOf = (name: string): number =>
          input.nodes.find((node) => node.name === name)?.concurrencyMax ?? DRAINED_NODE_CONCURRENCY_MAX;

        expect(new Set(plan.moves.map((move) => move.slot)).size).toBe(plan.moves.length);
        const perWave = new Map<string, number>();
        const perNode = new Map<string, number>();
        for (const move of plan.moves) {
          expect(move.from).toBe(input.slotMap.owners[move.slot]);
          expect(move.to).not.toBe(move.from);
          expect(move.bytes).toBe(input.slotBytes[move.slot]);
          for (const node of [move.from, move.to]) {
            const key = `${move.wave}/${node}`;
            perWave.set(key, (perWave.get(key) ?? 0) + 1);
            expect(perWave.get(key)).toBeLessThanOrEqual(limitOf(node));
            perNode.set(node, (perNode.get(node) ?? 0) + 1);
          }
        }
        // ⌈moves of a node / its limit⌉ is a lower bound on waves; the plan meets it.
        const lowerBound = Math.max(0, ...[...perNode].map(([node, count]) => Math.ceil(count / limitOf(node))));
        expect(plan.waves).toBe(lowerBound);
        expect(new Set(plan.moves.map((move) => move.wave))).toEqual(new Set(Array.from({ length: plan.waves }, (_, w) => w)));
        // Ordered by wave, then slot.
        const order = plan.moves.map((move) => move.wave * 1e6 + move.slot);
        expect(order).toEqual([...order].sort((x, y) => x - y));

        expect(plan.bytesMoved).toBe(plan.moves.reduce((t, move) => t + move.bytes, 0));
        expect(plan.bytesTotal).toBe(input.slotBytes.reduce((t, bytes) => t + bytes, 0));
        expect(plan.baseEpoch).toBe(input.slotMap.epoch);
      }),
      runs,
    );
  });
});

describe('planRebalance capacity properties', () => {
  const bytesAfter = (input: PlanInput, plan: Plan): Map<string, number> => {
    const bytesByNode = new Map<string, number>();
    ownersAfter(input, plan).forEach((owner, slot) => bytesByNode.set(owner, (bytesByNode.get(owner) ?? 0) + input.slotBytes[slot]!));
    return bytesByNode;
  };

  it('(e) never puts more bytes on a node than its capacity, or names the node and the missing bytes', () => {
    fc.assert(
      fc.property(shapeArb, fc.integer(), (shape, capSeed) => {
        const input = scenario(shape);
        const uncapped = bytesAfter(input, planRebalance(input));
        const random = randomSource(capSeed);
        // Capacities around what the uncapped plan puts on each node: some too small, most enough.
        const nodes = input.nodes.map((node) =>
          random() < 0.5 ? node : { ...node, capacityBytes: Math.floor((uncapped.get(node.name) ?? 0) * (0.8 + random() * 0.4)) },
        );
        const capped = { ...input, nodes };
        let plan: Plan;
        try {
          plan = planRebalance(capped);
        } catch (error) {
          expect(error).toBeInstanceOf(ReshardError);
          const reshardError = error as ReshardError;
          expect(reshardError.code).toBe('precondition');
          expect(reshardError.message).toMatch(/node "[^"]+"/);
          expect(reshardError.message).toMatch(/\d+ bytes .* missing/);
          return;
        }
        const bytesByNode = bytesAfter(capped, plan);
        for (const node of nodes) {
          if (node.capacityBytes !== undefined) expect(bytesByNode.get(node.name) ?? 0).toBeLessThanOrEqual(node.capacityBytes);
        }
      }),
      runs,
    );
  });

  it('(e) always succeeds when every node has room for anything it could be sent', () => {
    fc.assert(
      fc.property(shapeArb, (shape) => {
        const input = scenario(shape);
        const uncapped = planRebalance(input);
        const slotBytesMax = Math.max(0, ...uncapped.moves.map((move) => move.bytes));
        const nodes = input.nodes.map((node) => ({
          ...node,
          capacityBytes: (bytesAfter(input, uncapped).get(node.name) ?? 0) + (uncapped.targetSlotCounts[node.name] ?? 0) * slotBytesMax,
        }));
        expect(planRebalance({ ...input, nodes }).slotsMoved).toBe(uncapped.slotsMoved);
      }),
      runs,
    );
  });

  it('(e) fails exactly when no placement of the released slots fits (brute force on small maps)', () => {
    const smallArb = fc.record({
      owners: fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { minLength: 1, maxLength: 9 }),
      sizes: fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 9, maxLength: 9 }),
      targets: fc.subarray(['a', 'b', 'c', 'e', 'f'], { minLength: 1 }),
      capacities: fc.array(fc.option(fc.integer({ min: 0, max: 80 })), { minLength: 5, maxLength: 5 }),
    });
    fc.assert(
      fc.property(smallArb, ({ owners, sizes, targets, capacities }) => {
        const modulus = owners.length;
        const slotBytes = sizes.slice(0, modulus);
        const nodes = targets.map((name, i) => {
          const capacityBytes = capacities[i];
          return capacityBytes === null || capacityBytes === undefined
            ? { name, weight: 1, concurrencyMax: 2 }
            : { name, weight: 1, concurrencyMax: 2, capacityBytes };
        });
        const input: PlanInput = { slotMap: { modulus, epoch: 1, owners }, nodes, slotBytes };
        const uncapped = planRebalance({ ...input, nodes: nodes.map(({ name }) => ({ name, weight: 1, concurrencyMax: 2 })) });
        const feasible = somePlacementFits(input, uncapped);
        let succeeded = true;
        try {
          planRebalance(input);
        } catch (error) {
          expect((error as ReshardError).code).toBe('precondition');
          succeeded = false;
        }
        expect(succeeded).toBe(feasible);
      }),
      { numRuns: 400 },
    );
  });
});

/**
 * With the target counts and the released slots fixed by (b), is there any way
 * to give the released slots to the receivers so that every node fits?
 */
function somePlacementFits(input: PlanInput, uncapped: Plan): boolean {
  const capacityOf = (name: string): number => input.nodes.find((node) => node.name === name)?.capacityBytes ?? Infinity;
  const released = uncapped.moves;
  const movedSlots = new Set(released.map((move) => move.slot));
  const bytesByNode = new Map<string, number>();
  input.slotMap.owners.forEach((owner, slot) => {
    if (owner !== undefined && !movedSlots.has(slot)) bytesByNode.set(owner, (bytesByNode.get(owner) ?? 0) + input.slotBytes[slot]!);
  });
  for (const [name, bytes] of bytesByNode) if (bytes > capacityOf(name)) return false;
  const need = new Map<string, number>();
  for (const move of released) need.set(move.to, (need.get(move.to) ?? 0) + 1);
  const receivers = [...need.keys()];
  const place = (i: number): boolean => {
    if (i === released.length) return true;
    const bytes = released[i]!.bytes;
    for (const name of receivers) {
      const held = bytesByNode.get(name) ?? 0;
      if (need.get(name)! === 0 || held + bytes > capacityOf(name)) continue;
      need.set(name, need.get(name)! - 1);
      bytesByNode.set(name, held + bytes);
      const fits = place(i + 1);
      need.set(name, need.get(name)! + 1);
      bytesByNode.set(name, held);
      if (fits) return true;
    }
    return false;
  };
  return place(0);
}
