import { assert } from '../core/assert.js';
import { nodeShares, type LoadNode, type NodeShare, type SlotLoadOf } from './loadShares.js';
import { scheduleWaves } from './schedule.js';
import { DRAINED_NODE_CONCURRENCY_MAX, type PlannedMove } from './types.js';

/** A move must lower the load above shares by more than this fraction of the total load (at least of 1 unit): float rounding is not a benefit. */
const LOAD_REMOVED_MIN_FRACTION = 1e-9;

/** What a load plan starts from and how far it may go. */
export interface LoadPlanInput {
  /** Every node that may carry load, at its weight (0: carry none). A slot's owner missing here has weight 0. */
  nodes: readonly LoadNode[];
  /** Every slot, keyed by slot id, with its owner, load and bytes. */
  slots: readonly SlotLoadOf[];
  /** A node is over-loaded above (1 + tolerance) × its weighted share of the load… */
  tolerance: number;
  /** …and by more than this much load above its share (the absolute floor: small clusters and idle periods never trigger). */
  loadFloor: number;
  /** No move whose load removed per byte moved is below this. */
  benefitPerByteMin: number;
  /** A move is counted as at least this many bytes (its fixed cost: setup, freeze, switch), so an empty slot is not free to move. */
  moveBytesFloor: number;
  /** Slots that may not move now (cooling down after a move, or in flight). */
  excludedSlots?: ReadonlySet<number>;
  /** At most this many moves in one plan. */
  movesMax: number;
}

export interface LoadMove extends PlannedMove {
  load: number;
  /** How much the cluster's load above shares (the sum over nodes of load beyond their share) drops by this move. */
  loadRemoved: number;
  benefitPerByte: number;
}

/** Why an over-loaded node keeps its load: it is said, with numbers, in the autopilot's decisions. */
export interface Unresolved {
  node: string;
  reason: string;
}

export interface LoadPlan {
  moves: LoadMove[];
  waves: number;
  /** Nodes over-loaded before the plan (beyond tolerance and floor). */
  overloaded: string[];
  before: NodeShare[];
  after: NodeShare[];
  /** Over-loaded nodes the plan could not bring within tolerance, each with the reason. */
  unresolved: Unresolved[];
}

/** True when `share` is beyond tolerance and floor of its weighted share of `loadTotal`. */
export function isOverloaded(share: Pick<NodeShare, 'load' | 'weightedShare'>, loadTotal: number, tolerance: number, loadFloor: number): boolean {
  const fair = loadTotal * share.weightedShare;
  return share.load > fair * (1 + tolerance) && share.load - fair > loadFloor;
}

/** The cluster's load above shares: Σ over nodes of max(0, load − weighted share). What the plan lowers. */
export function loadAboveShares(shares: readonly NodeShare[], loadTotal: number): number {
  return shares.reduce((sum, share) => sum + Math.max(0, share.load - loadTotal * share.weightedShare), 0);
}

/**
 * Moves that bring over-loaded nodes toward their weighted share of the load,
 * chosen by load removed per byte moved. Greedy, one move at a time: the most
 * over-loaded node first gives the slot (to the target) with the best benefit
 * per byte among moves that leave the target not over-loaded (so the plan never
 * makes a node a later source — nothing flaps back) and lower the load above
 * shares. Each node at most its concurrencyMax moves per wave; no target
 * beyond its capacity. Pure and deterministic.
 */
export function planLoadMoves(input: LoadPlanInput): LoadPlan {
  assertLoadPlanInput(input);
  const { tolerance, loadFloor } = input;
  const excluded = input.excludedSlots ?? new Set<number>();
  const before = nodeShares(input.nodes, input.slots);
  const loadTotal = input.slots.reduce((sum, slot) => sum + slot.load, 0);
  const shares = new Map(before.map((share) => [share.node, { ...share }]));
  const nodeByName = new Map(input.nodes.map((node) => [node.name, node]));
  const overloaded = before.filter((share) => isOverloaded(share, loadTotal, tolerance, loadFloor)).map((share) => share.node);
  const owners = new Map(input.slots.map((slot) => [slot.slot, slot.owner]));
  const moved = new Set<number>();
  const senders = new Set<string>();
  const moves: LoadMove[] = [];
  const unresolved = new Map<string, string>();
  const fairOf = (share: NodeShare): number => loadTotal * share.weightedShare;

  while (moves.length < input.movesMax) {
    const sources = [...shares.values()]
      .filter((share) => isOverloaded(share, loadTotal, tolerance, loadFloor) && !unresolved.has(share.node))
      .sort((a, b) => (b.load - fairOf(b)) - (a.load - fairOf(a)) || a.node.localeCompare(b.node));
    const source = sources[0];
    if (!source) break;
    // A node that gave slots in this plan does not take any: each node only sends or only receives (one wave schedule, no churn).
    const targets = [...shares.values()].filter((share) => share.node !== source.node && share.weight > 0 && !senders.has(share.node));
    let best: LoadMove | undefined;
    let belowBenefit: { slot: number; perByte: number } | undefined;
    let hottestFits = false;
    const sourceRatio = fairOf(source) > 0 ? source.load / fairOf(source) : Infinity;
    for (const slot of input.slots) {
      if (owners.get(slot.slot) !== source.node || slot.load <= 0 || excluded.has(slot.slot) || moved.has(slot.slot)) continue;
      for (const target of targets) {
        const targetAfter = target.load + slot.load;
        const targetFair = fairOf(target);
        if (isOverloaded({ load: targetAfter, weightedShare: target.weightedShare }, loadTotal, tolerance, loadFloor)) continue;
        if (!(targetAfter / targetFair < sourceRatio)) continue;
        const capacity = nodeByName.get(target.node)?.capacityBytes;
        if (capacity !== undefined && target.bytes + slot.bytes > capacity) continue;
        hottestFits = true;
        const removed = Math.min(slot.load, source.load - fairOf(source)) - Math.max(0, targetAfter - targetFair) + Math.max(0, target.load - targetFair);
        // Below rounding noise of the sums: not a real improvement.
        if (!(removed > LOAD_REMOVED_MIN_FRACTION * Math.max(1, loadTotal))) continue;
        const perByte = removed / Math.max(slot.bytes, input.moveBytesFloor);
        if (perByte < input.benefitPerByteMin) {
          if (!belowBenefit || perByte > belowBenefit.perByte) belowBenefit = { slot: slot.slot, perByte };
          continue;
        }
        const candidate: LoadMove = { slot: slot.slot, from: source.node, to: target.node, bytes: slot.bytes, wave: 0, load: slot.load, loadRemoved: removed, benefitPerByte: perByte };
        if (!best || better(candidate, best)) best = candidate;
      }
    }
    if (!best) {
      unresolved.set(source.node, belowBenefit
        ? `its best move (slot ${belowBenefit.slot}) removes ${formatPerMiB(belowBenefit.perByte)} load per MiB moved, below the minimum ${formatPerMiB(input.benefitPerByteMin)}`
        : hottestFits
          ? 'no move lowers the load above shares'
          : noTargetReason(input, source, owners, excluded, moved));
      continue;
    }
    moves.push(best);
    moved.add(best.slot);
    senders.add(best.from);
    owners.set(best.slot, best.to);
    const from = shares.get(best.from)!;
    const to = shares.get(best.to)!;
    from.load -= best.load;
    from.bytes -= best.bytes;
    from.slots--;
    to.load += best.load;
    to.bytes += best.bytes;
    to.slots++;
  }
  for (const share of shares.values()) {
    if (isOverloaded(share, loadTotal, tolerance, loadFloor) && !unresolved.has(share.node)) unresolved.set(share.node, `the plan stops at ${input.movesMax} move(s)`);
  }
  const scheduled = scheduleWaves(moves, (name) => nodeByName.get(name)?.concurrencyMax ?? DRAINED_NODE_CONCURRENCY_MAX);
  const byslot = new Map(moves.map((move) => [move.slot, move]));
  const planned = scheduled.moves.map((move) => ({ ...byslot.get(move.slot)!, wave: move.wave }));
  const after = nodeShares(input.nodes, input.slots.map((slot) => ({ ...slot, owner: owners.get(slot.slot)! })));
  return { moves: planned, waves: scheduled.waves, overloaded, before, after, unresolved: [...unresolved].map(([node, reason]) => ({ node, reason })) };
}

function better(a: LoadMove, b: LoadMove): boolean {
  if (a.benefitPerByte !== b.benefitPerByte) return a.benefitPerByte > b.benefitPerByte;
  if (a.loadRemoved !== b.loadRemoved) return a.loadRemoved > b.loadRemoved;
  if (a.slot !== b.slot) return a.slot < b.slot;
  return a.to < b.to;
}

/** Why no target could take any of the source's slots: usually one slot alone is more than a target may take (a split, later). */
function noTargetReason(input: LoadPlanInput, source: NodeShare, owners: ReadonlyMap<number, string>, excluded: ReadonlySet<number>, moved: ReadonlySet<number>): string {
  const own = input.slots.filter((slot) => owners.get(slot.slot) === source.node && slot.load > 0);
  const free = own.filter((slot) => !excluded.has(slot.slot) && !moved.has(slot.slot));
  if (own.length === 0) return 'it owns no slot with load';
  if (free.length === 0) return `all ${own.length} of its slots with load are cooling down or moving`;
  const hottest = free.reduce((a, b) => (b.load > a.load ? b : a));
  return `no other node can take one of its slots without going beyond its own share (hottest free slot ${hottest.slot}: ${hottest.load.toFixed(1)} load, a slot to split)`;
}

function formatPerMiB(perByte: number): string {
  return `${(perByte * 1_048_576).toPrecision(3)}`;
}

function assertLoadPlanInput(input: LoadPlanInput): void {
  assert(input.tolerance >= 0 && Number.isFinite(input.tolerance), `tolerance ${input.tolerance} is ≥ 0`);
  assert(input.loadFloor >= 0 && Number.isFinite(input.loadFloor), `load floor ${input.loadFloor} is ≥ 0`);
  assert(input.benefitPerByteMin >= 0, `minimum benefit per byte ${input.benefitPerByteMin} is ≥ 0`);
  assert(input.moveBytesFloor >= 1, `move bytes floor ${input.moveBytesFloor} is ≥ 1`);
  assert(Number.isSafeInteger(input.movesMax) && input.movesMax >= 0, `movesMax ${input.movesMax} is a whole number`);
  const seen = new Set<number>();
  for (const slot of input.slots) {
    assert(!seen.has(slot.slot), `slot ${slot.slot} appears once`);
    seen.add(slot.slot);
    assert(slot.load >= 0 && Number.isFinite(slot.load) && slot.bytes >= 0, `slot ${slot.slot} has a finite load ≥ 0 and bytes ≥ 0`);
  }
  for (const node of input.nodes) assert(node.concurrencyMax >= 1, `node "${node.name}" allows at least one move at once`);
}
