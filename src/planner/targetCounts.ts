import { assert } from '../core/assert.js';
import { compareNames } from './validatePlanInput.js';

export interface WeightedNode {
  name: string;
  weight: number;
}

/**
 * Weights as exact integers with the same ratios. A double is m·2^e with an
 * integer m, so scaling every weight by the same power of two makes them all
 * integers without rounding; shares computed from these are exact, so a share
 * that is a whole number (3 nodes of weight 0.1 and 0.2 …) is treated as one.
 */
export function exactWeights(weights: readonly number[]): bigint[] {
  const scaled = weights.map((weight) => {
    assert(Number.isFinite(weight) && weight >= 0, `weight ${weight} is not finite and >= 0`);
    let value = weight;
    let doublings = 0;
    // A non-integer double is below 2^52 and has at most 1074 fractional bits, so this ends.
    while (!Number.isInteger(value)) {
      value *= 2;
      doublings++;
    }
    return { value: BigInt(value), doublings };
  });
  const doublingsMax = Math.max(0, ...scaled.map((s) => s.doublings));
  return scaled.map((s) => s.value << BigInt(doublingsMax - s.doublings));
}

/**
 * Target slot count per node: each node gets floor or ceil of its weighted share
 * M·w/Σw (so |count − share| < 1), summing to M. Which nodes get the ceil decides
 * how many slots move: moves = Σ max(0, current − target), and giving the ceil to
 * a node that holds more than the floor saves exactly one move, to any other node
 * none. So the ceils go first to nodes holding more than their floor, then to the
 * largest remainders, then by name — which makes the move count the minimum.
 *
 * `currentCounts` may name nodes outside `nodes` (being drained): they get 0.
 */
export function targetSlotCounts(
  modulus: number,
  nodes: readonly WeightedNode[],
  currentCounts: ReadonlyMap<string, number>,
): Map<string, number> {
  const weights = exactWeights(nodes.map((node) => node.weight));
  const weightTotal = weights.reduce((sum, w) => sum + w, 0n);
  assert(weightTotal > 0n, 'no node has a positive weight');
  const m = BigInt(modulus);

  const shares = nodes.map((node, i) => {
    const numerator = m * weights[i]!;
    return {
      name: node.name,
      floor: Number(numerator / weightTotal),
      remainder: numerator % weightTotal,
      current: currentCounts.get(node.name) ?? 0,
    };
  });
  const ceilsToGive = modulus - shares.reduce((sum, s) => sum + s.floor, 0);
  const candidates = shares.filter((s) => s.remainder > 0n);
  // The remainders sum to ceilsToGive·Σw and each is below Σw, so there are enough candidates.
  assert(ceilsToGive >= 0 && ceilsToGive <= candidates.length, `cannot round ${ceilsToGive} shares up`);
  candidates.sort((a, b) => {
    const aSaves = a.current > a.floor ? 1 : 0;
    const bSaves = b.current > b.floor ? 1 : 0;
    if (aSaves !== bSaves) return bSaves - aSaves;
    if (a.remainder !== b.remainder) return a.remainder > b.remainder ? -1 : 1;
    return compareNames(a.name, b.name);
  });
  const roundedUp = new Set(candidates.slice(0, ceilsToGive).map((s) => s.name));

  const targetByNode = new Map<string, number>();
  const names = [...new Set([...nodes.map((n) => n.name), ...currentCounts.keys()])].sort(compareNames);
  const shareByName = new Map(shares.map((s) => [s.name, s]));
  for (const name of names) {
    const share = shareByName.get(name);
    targetByNode.set(name, share === undefined ? 0 : share.floor + (roundedUp.has(name) ? 1 : 0));
  }
  const total = [...targetByNode.values()].reduce((sum, count) => sum + count, 0);
  assert(total === modulus, `target counts sum to ${total}, not ${modulus}`);
  return targetByNode;
}
