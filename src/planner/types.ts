import type { SlotMap } from '../core/slotMap.js';

/** A node as the planner sees it: how much of the data it should hold and its limits. */
export interface PlannerNode {
  name: string;
  /** Share of the slots relative to the other nodes' weights; 0 means drain it. */
  weight: number;
  /** Moves at once in which this node is the source or the target; at least 1. */
  concurrencyMax: number;
  /** Bytes this node may hold after the plan; unset means unlimited. */
  capacityBytes?: number;
}

export interface PlanInput {
  slotMap: SlotMap;
  /** The target node set. A node that owns slots but is absent here is drained. */
  nodes: readonly PlannerNode[];
  /** Bytes of each slot (all tables of its colocation group); length = modulus. */
  slotBytes: readonly number[];
}

export interface PlannedMove {
  slot: number;
  from: string;
  to: string;
  bytes: number;
  /** 0-based; all moves of one wave may run at once within every node's concurrencyMax. */
  wave: number;
}

export interface Plan {
  modulus: number;
  /** The slot map epoch the plan was computed from; a plan is stale once the epoch moves on. */
  baseEpoch: number;
  /** Ordered by wave, then slot. */
  moves: PlannedMove[];
  /** Every node of the target set and every current owner (0 for drained nodes), by name. */
  targetSlotCounts: Record<string, number>;
  slotsMoved: number;
  bytesMoved: number;
  bytesTotal: number;
  waves: number;
}

/**
 * A node that owns slots but is not in the target set has no PlannerNode, so no
 * concurrency limit of its own. One move at a time is the safe default; list the
 * node with weight 0 to drain it faster.
 */
export const DRAINED_NODE_CONCURRENCY_MAX = 1;
