import { assert } from '../core/assert.js';
import { formatBytes } from '../core/bytes.js';
import { ReshardError } from '../core/errors.js';
import type { SlotMap } from '../core/slotMap.js';
import type { PlannerNode } from './types.js';
import { compareNames } from './validatePlanInput.js';

/** A move before it is given a wave. */
export interface ChosenMove {
  slot: number;
  from: string;
  to: string;
  bytes: number;
}

/**
 * Bound on the search for a placement within capacity: the greedy first try
 * almost always succeeds; the bound keeps a pathological input from hanging.
 */
export const PLACEMENT_STEPS_MAX = 100_000;

interface Receiver {
  name: string;
  need: number;
  /** Bytes it may still take; Infinity without a capacity. */
  roomBytes: number;
  projectedBytes: number;
  targetCount: number;
}

/**
 * Which slots move, and where. A node above its target gives its smallest slots
 * (bytes, then slot number) — the fewest bytes for the count balance requires.
 * Each released slot, largest first, goes to the receiver with the most room per
 * slot it still needs (nodes without a capacity first, then the fewest bytes per
 * target slot, then name), so large slots land where they fit and bytes even out.
 * If that greedy choice runs into a capacity, a bounded depth-first search tries
 * the other choices before giving up with a precondition error.
 */
export function chooseMoves(
  slotMap: SlotMap,
  slotBytes: readonly number[],
  targetByNode: ReadonlyMap<string, number>,
  nodeByName: ReadonlyMap<string, PlannerNode>,
): ChosenMove[] {
  const slotsByOwner = new Map<string, number[]>();
  slotMap.owners.forEach((owner, slot) => {
    if (owner === undefined) return;
    const slots = slotsByOwner.get(owner) ?? [];
    slots.push(slot);
    slotsByOwner.set(owner, slots);
  });
  const bySizeThenSlot = (a: number, b: number): number => slotBytes[a]! - slotBytes[b]! || a - b;

  const released: { slot: number; from: string; bytes: number }[] = [];
  const receivers: Receiver[] = [];
  for (const [name, targetCount] of targetByNode) {
    const owned = slotsByOwner.get(name) ?? [];
    const keptCount = Math.min(owned.length, targetCount);
    const giveCount = owned.length - keptCount;
    const ownedSmallestFirst = [...owned].sort(bySizeThenSlot);
    for (const slot of ownedSmallestFirst.slice(0, giveCount)) released.push({ slot, from: name, bytes: slotBytes[slot]! });
    const keptBytes = sum(ownedSmallestFirst.slice(giveCount).map((slot) => slotBytes[slot]!));
    const capacityBytes = nodeByName.get(name)?.capacityBytes;
    if (capacityBytes !== undefined && keptBytes > capacityBytes) {
      throw overCapacity(name, keptBytes, capacityBytes, '');
    }
    if (targetCount > owned.length) {
      receivers.push({
        name,
        need: targetCount - owned.length,
        roomBytes: capacityBytes === undefined ? Infinity : capacityBytes - keptBytes,
        projectedBytes: keptBytes,
        targetCount,
      });
    }
  }
  assert(
    released.length === sum(receivers.map((r) => r.need)),
    'slots released and slots needed differ',
  );

  // Largest first: the hard-to-fit slots are placed while there is the most room.
  const items = released.sort((a, b) => b.bytes - a.bytes || a.slot - b.slot);
  // bytesOfSmallest(k) = bytes of the k smallest items = the last k, which stay unplaced until the end.
  const suffixBytes = new Array<number>(items.length + 1).fill(0);
  for (let i = items.length - 1; i >= 0; i--) suffixBytes[i] = suffixBytes[i + 1]! + items[i]!.bytes;
  const bytesOfSmallest = (k: number): number => suffixBytes[items.length - k]!;
  for (const receiver of receivers) {
    const bytesAtLeast = bytesOfSmallest(receiver.need);
    if (bytesAtLeast > receiver.roomBytes) {
      throw overCapacity(receiver.name, receiver.projectedBytes + bytesAtLeast, receiver.projectedBytes + receiver.roomBytes, 'at least ');
    }
  }

  const receiverOf = placeWithinCapacity(items, receivers, bytesOfSmallest);
  return items.map((item, i) => ({ ...item, to: receivers[receiverOf[i]!]!.name }));
}

/** Index of the receiver for each item; iterative so that thousands of slots cannot overflow the stack. */
function placeWithinCapacity(
  items: readonly { slot: number; bytes: number }[],
  receivers: Receiver[],
  bytesOfSmallest: (k: number) => number,
): number[] {
  // Enough steps for the greedy first descent to finish or reach its first dead end.
  const stepsMax = PLACEMENT_STEPS_MAX + items.length * (receivers.length + 1);
  const chosen: number[] = [];
  const optionsByDepth: (number[] | undefined)[] = [];
  const cursorByDepth: number[] = [];
  let firstDeadEnd: DeadEnd | undefined;
  let steps = 0;
  let depth = 0;
  while (depth < items.length && steps <= stepsMax) {
    const item = items[depth]!;
    let options = optionsByDepth[depth];
    if (options === undefined) {
      options = placementOptions(item.bytes, receivers);
      optionsByDepth[depth] = options;
      cursorByDepth[depth] = 0;
    }
    const cursor = cursorByDepth[depth]!;
    steps++;
    if (cursor < options.length) {
      cursorByDepth[depth] = cursor + 1;
      const receiver = receivers[options[cursor]!]!;
      take(receiver, item.bytes);
      // Prune: what it still needs must fit even if it gets the smallest slots left.
      if (bytesOfSmallest(receiver.need) <= receiver.roomBytes) {
        chosen[depth] = options[cursor]!;
        depth++;
      } else {
        give(receiver, item.bytes);
      }
    } else {
      // The first dead end in depth-first order lies on the greedy path: every choice failed at once.
      firstDeadEnd ??= describeDeadEnd(item, items.length - depth - 1, receivers, bytesOfSmallest);
      optionsByDepth[depth] = undefined;
      depth--;
      if (depth < 0) break;
      give(receivers[chosen[depth]!]!, items[depth]!.bytes);
    }
  }
  if (depth === items.length) return chosen;

  assert(firstDeadEnd !== undefined, 'placement failed without a dead end');
  const { slot, bytes, closest, missingBytes } = firstDeadEnd;
  throw new ReshardError(
    'precondition',
    `slot ${slot} (${formatBytes(bytes)}) fits on no node still receiving slots: node "${closest}" comes closest, ` +
      `${missingBytes} bytes (${formatBytes(missingBytes)}) missing`,
    `raise the capacity of "${closest}" by ${formatBytes(missingBytes)} or more, or add a node`,
  );
}

interface DeadEnd {
  slot: number;
  bytes: number;
  closest: string;
  missingBytes: number;
}

/**
 * Why a slot fits nowhere: a receiver taking it must still fit the smallest
 * slots it needs after it; the one short by the fewest bytes is named.
 */
function describeDeadEnd(
  item: { slot: number; bytes: number },
  itemsAfter: number,
  receivers: readonly Receiver[],
  bytesOfSmallest: (k: number) => number,
): DeadEnd {
  let best: DeadEnd | undefined;
  for (const receiver of receivers) {
    if (receiver.need === 0) continue;
    assert(receiver.need - 1 <= itemsAfter, 'a receiver needs more slots than are left');
    const missingBytes = item.bytes + bytesOfSmallest(receiver.need - 1) - receiver.roomBytes;
    if (best === undefined || missingBytes < best.missingBytes || (missingBytes === best.missingBytes && receiver.name < best.closest)) {
      best = { slot: item.slot, bytes: item.bytes, closest: receiver.name, missingBytes };
    }
  }
  assert(best !== undefined && best.missingBytes > 0, `slot ${item.slot} has a place but none was taken`);
  return best;
}

/** Receivers that can take a slot of `bytes`, best first; of receivers alike in need and room only the first. */
function placementOptions(bytes: number, receivers: readonly Receiver[]): number[] {
  const fitting = receivers
    .map((receiver, index) => ({ receiver, index }))
    .filter(({ receiver }) => receiver.need > 0 && bytes <= receiver.roomBytes);
  fitting.sort((a, b) => {
    const roomPerSlotA = a.receiver.roomBytes / a.receiver.need;
    const roomPerSlotB = b.receiver.roomBytes / b.receiver.need;
    if (roomPerSlotA !== roomPerSlotB) return roomPerSlotA > roomPerSlotB ? -1 : 1;
    const perSlotA = a.receiver.projectedBytes / a.receiver.targetCount;
    const perSlotB = b.receiver.projectedBytes / b.receiver.targetCount;
    if (perSlotA !== perSlotB) return perSlotA - perSlotB;
    return compareNames(a.receiver.name, b.receiver.name);
  });
  // Two receivers with the same need and room lead to the same feasibility; trying both is wasted search.
  const seen = new Set<string>();
  const options: number[] = [];
  for (const { receiver, index } of fitting) {
    const key = `${receiver.need}/${receiver.roomBytes}`;
    if (seen.has(key)) continue;
    seen.add(key);
    options.push(index);
  }
  return options;
}

function take(receiver: Receiver, bytes: number): void {
  receiver.need--;
  receiver.roomBytes -= bytes;
  receiver.projectedBytes += bytes;
}

function give(receiver: Receiver, bytes: number): void {
  receiver.need++;
  receiver.roomBytes += bytes;
  receiver.projectedBytes -= bytes;
}

function overCapacity(name: string, bytes: number, capacityBytes: number, atLeast: string): ReshardError {
  const missingBytes = bytes - capacityBytes;
  return new ReshardError(
    'precondition',
    `node "${name}" would hold ${atLeast}${formatBytes(bytes)} after the plan but its capacity is ${formatBytes(capacityBytes)}: ` +
      `${atLeast}${missingBytes} bytes (${formatBytes(missingBytes)}) missing`,
    `raise the capacity of "${name}" or lower its weight`,
  );
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
