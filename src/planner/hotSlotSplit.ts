import type { LoadNode, SlotLoadOf } from './loadShares.js';
import { nodeShares } from './loadShares.js';

/** A slot too hot for any node: split it, its high child to `to`. */
export interface SplitCandidate {
  slot: number;
  from: string;
  to: string;
  load: number;
  /** The load its node should carry (its weighted share of the total). */
  fairLoad: number;
  reason: string;
}

/**
 * Where one slot alone carries more than its node's fair share of the load,
 * no move helps (wherever it goes, that node is over its share): split it,
 * and place the high child (about half its keys, so half its load when keys
 * are spread) on the node furthest under its own share. Looks at the
 * over-loaded nodes in order (most over first), at each one's hottest slot
 * that may split and is not excluded. Pure.
 */
export function hotSlotSplit(input: {
  nodes: readonly LoadNode[];
  slots: readonly SlotLoadOf[];
  /** Nodes whose load trigger fired, the most over first. */
  overloaded: readonly string[];
  /** Nodes a child may go to (active, with weight). */
  targets: readonly string[];
  excludedSlots?: ReadonlySet<number>;
  splittable: (slot: number) => boolean;
}): SplitCandidate | undefined {
  const shares = nodeShares(input.nodes, input.slots);
  const loadTotal = input.slots.reduce((sum, slot) => sum + slot.load, 0);
  if (loadTotal <= 0) return undefined;
  const fairOf = (node: string): number => loadTotal * (shares.find((share) => share.node === node)?.weightedShare ?? 0);
  for (const node of input.overloaded) {
    const hottest = input.slots
      .filter((slot) => slot.owner === node && !input.excludedSlots?.has(slot.slot) && input.splittable(slot.slot))
      .sort((a, b) => b.load - a.load || a.slot - b.slot)[0];
    if (!hottest || !(hottest.load > fairOf(node))) continue;
    const target = shares
      .filter((share) => share.node !== node && share.weight > 0 && input.targets.includes(share.node))
      .sort((a, b) => a.load / fairOf(a.node) - b.load / fairOf(b.node) || a.node.localeCompare(b.node))[0];
    if (!target) continue;
    return {
      slot: hottest.slot, from: node, to: target.node, load: hottest.load, fairLoad: fairOf(node),
      reason: `slot ${hottest.slot} alone carries ${hottest.load.toFixed(1)} load, more than ${node}'s fair share ${fairOf(node).toFixed(1)}: no move helps; split it, its high child to ${target.node} (load/share ${(target.load / fairOf(target.node)).toFixed(2)})`,
    };
  }
  return undefined;
}
