import { movementMatrix, type MovementMatrix } from './movementMatrix.js';
import { planRebalance } from './planRebalance.js';
import type { PlanInput } from './types.js';
import { compareNames } from './validatePlanInput.js';
import { slotIds, slotOwners, slotWeight } from '../core/slotMap.js';

export interface StrategyResult {
  /** Fraction of all data whose owner changes, 0..1. */
  moved_fraction: number;
  moved_bytes: number;
  description: string;
}

export interface Comparison {
  nodes_before: string[];
  nodes_after: string[];
  modulus: number;
  /** How many slots the map has: the modulus until a slot is split, more after. */
  slot_count: number;
  strategies: {
    range: StrategyResult;
    modulo: StrategyResult;
    slots: StrategyResult & { slots_moved: number; ideal_fraction: number };
  };
  matrix: MovementMatrix;
}

/**
 * How much data a topology change moves under three ways of sharding, for
 * `reshard plan --compare`; needs no cluster, only a slot map and a target.
 *
 * Conventions, since naive schemes need an order of nodes:
 * - before = the current owners sorted by name; after = the target nodes with a
 *   positive weight, survivors in their before order followed by new nodes by
 *   name. Node i is the i-th of its list; a node keeps data only where the same
 *   node (by name) owns it before and after.
 * - range and modulo are weight-blind, as the schemes they model are: every node
 *   owns an equal part of the hash space. Data is assumed spread evenly over the
 *   hash space, so their moved bytes are the fraction times the total.
 * - slots is the real plan. Its fraction counts bytes, or slots when no slot has
 *   a known size (all zero); ideal_fraction is the least data any placement must
 *   move to give every node exactly its weighted share, in the same unit.
 */
export function compareStrategies(input: PlanInput): Comparison {
  const plan = planRebalance(input);
  const { slotMap, slotBytes } = input;
  const before = slotOwners(slotMap).sort(compareNames);
  const targets = input.nodes.filter((node) => node.weight > 0);
  const targetNames = new Set(targets.map((node) => node.name));
  const after = [
    ...before.filter((name) => targetNames.has(name)),
    ...[...targetNames].filter((name) => !before.includes(name)).sort(compareNames),
  ];

  const bytesKnown = slotBytes.some((bytes) => bytes > 0);
  const unitsOfSlot = (slot: number): number => (bytesKnown ? slotBytes[slot]! : slotWeight(slotMap, slot));
  const unitsTotal = bytesKnown ? plan.bytesTotal : slotMap.modulus;
  const unitsMoved = plan.moves.reduce((total, move) => total + unitsOfSlot(move.slot), 0);

  const rangeFraction = rangeMovedFraction(before, after);
  const moduloFraction = moduloMovedFraction(before, after);
  const unitsHeld = new Map<string, number>();
  slotIds(slotMap).forEach((slot) => unitsHeld.set(slotMap.owners[slot]!, (unitsHeld.get(slotMap.owners[slot]!) ?? 0) + unitsOfSlot(slot)));

  return {
    nodes_before: before,
    nodes_after: after,
    modulus: slotMap.modulus,
    slot_count: slotIds(slotMap).length,
    strategies: {
      range: {
        moved_fraction: rangeFraction,
        moved_bytes: Math.round(rangeFraction * plan.bytesTotal),
        description: 'contiguous hash ranges: node i of n owns [i/n, (i+1)/n), re-split evenly for the new node list',
      },
      modulo: {
        moved_fraction: moduloFraction,
        moved_bytes: Math.round(moduloFraction * plan.bytesTotal),
        description: 'hash mod N: node i of N owns the keys whose hash mod N is i',
      },
      slots: {
        moved_fraction: unitsTotal === 0 ? 0 : unitsMoved / unitsTotal,
        moved_bytes: plan.bytesMoved,
        slots_moved: plan.slotsMoved,
        ideal_fraction: idealMovedFraction(unitsHeld, unitsTotal, targets),
        description: `${slotIds(slotMap).length} slots: only whole slots move, as few as balance needs`,
      },
    },
    matrix: movementMatrix(input, plan),
  };
}

/**
 * Node at index i of n owns [i/n, (i+1)/n). Scaled by n·m the ranges are integer
 * intervals [i·m, (i+1)·m) and [j·n, (j+1)·n), so the overlap is exact.
 */
export function rangeMovedFraction(before: readonly string[], after: readonly string[]): number {
  const n = before.length;
  const m = after.length;
  let keptScaled = 0;
  before.forEach((name, i) => {
    const j = after.indexOf(name);
    if (j < 0) return;
    const overlap = Math.min((i + 1) * m, (j + 1) * n) - Math.max(i * m, j * n);
    keptScaled += Math.max(0, overlap);
  });
  return 1 - keptScaled / (n * m);
}

/**
 * A key with hash h is owned by before[h mod n] and after[h mod m]. Over one
 * period lcm(n, m), by the Chinese remainder theorem each pair (i, j) with
 * i ≡ j (mod gcd) is hit by exactly one residue and other pairs by none; so a
 * node kept at index i before and j after keeps 1/lcm of the keys iff
 * i ≡ j (mod gcd), and nothing otherwise.
 */
export function moduloMovedFraction(before: readonly string[], after: readonly string[]): number {
  const n = before.length;
  const m = after.length;
  const g = gcd(n, m);
  const period = (n / g) * m;
  let keptResidues = 0;
  before.forEach((name, i) => {
    const j = after.indexOf(name);
    if (j >= 0 && (i - j) % g === 0) keptResidues++;
  });
  return 1 - keptResidues / period;
}

/**
 * Σ over nodes of what a node holds beyond its exact weighted share: that much
 * must leave it under any placement, and moving exactly that is enough.
 */
function idealMovedFraction(
  unitsHeld: ReadonlyMap<string, number>,
  unitsTotal: number,
  targets: readonly { name: string; weight: number }[],
): number {
  if (unitsTotal === 0) return 0;
  const weightTotal = targets.reduce((total, node) => total + node.weight, 0);
  const weightByName = new Map(targets.map((node) => [node.name, node.weight]));
  let excessScaled = 0;
  for (const [name, units] of unitsHeld) {
    excessScaled += Math.max(0, units * weightTotal - unitsTotal * (weightByName.get(name) ?? 0));
  }
  return excessScaled / (unitsTotal * weightTotal);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
