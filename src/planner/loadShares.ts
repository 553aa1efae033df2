/** One slot's load (any unit per second: calls/s from routers, scans + writes/s from nodes) and where it lives. */
export interface SlotLoadOf {
  slot: number;
  owner: string;
  load: number;
  bytes: number;
}

/** A node as load balancing sees it. */
export interface LoadNode {
  name: string;
  /** Its share of the load relative to the other nodes' weights; 0: it should carry none (draining). */
  weight: number;
  /** Moves at once in which this node is source or target; at least 1. */
  concurrencyMax: number;
  /** Bytes this node may hold; unset: unlimited. */
  capacityBytes?: number;
}

export interface NodeShare {
  node: string;
  weight: number;
  slots: number;
  bytes: number;
  load: number;
  /** load / total load (0 when the cluster is idle). */
  share: number;
  /** weight / total weight: the share it should carry. */
  weightedShare: number;
  /** load / (its weighted share of the total load): 1 = exactly its share; Infinity for load on a node of weight 0. */
  ratio: number;
}

/** Each node's load against its weighted share; nodes in `nodes` order, then any owner not listed (weight 0). */
export function nodeShares(nodes: readonly Pick<LoadNode, 'name' | 'weight'>[], slots: readonly SlotLoadOf[]): NodeShare[] {
  const weightOf = new Map(nodes.map((node) => [node.name, Math.max(0, node.weight)]));
  for (const slot of slots) if (!weightOf.has(slot.owner)) weightOf.set(slot.owner, 0);
  const weightTotal = [...weightOf.values()].reduce((sum, weight) => sum + weight, 0);
  const loadTotal = slots.reduce((sum, slot) => sum + slot.load, 0);
  const shares = new Map<string, NodeShare>();
  for (const [node, weight] of weightOf) {
    shares.set(node, { node, weight, slots: 0, bytes: 0, load: 0, share: 0, weightedShare: weightTotal > 0 ? weight / weightTotal : 0, ratio: 0 });
  }
  for (const slot of slots) {
    const share = shares.get(slot.owner)!;
    share.slots++;
    share.bytes += slot.bytes;
    share.load += slot.load;
  }
  for (const share of shares.values()) {
    share.share = loadTotal > 0 ? share.load / loadTotal : 0;
    const fair = loadTotal * share.weightedShare;
    share.ratio = fair > 0 ? share.load / fair : (share.load > 0 ? Infinity : 0);
  }
  return [...shares.values()];
}
