import { assert } from '../core/assert.js';
import { formatBytes } from '../core/bytes.js';
import type { NodeSpace } from './headroom.js';
import type { LoadMove, LoadPlan, Unresolved } from './loadMoves.js';
import { nodeShares, type LoadNode, type SlotLoadOf } from './loadShares.js';
import { scheduleWaves } from './schedule.js';
import { DRAINED_NODE_CONCURRENCY_MAX } from './types.js';

/** One node's disk headroom against its limit, with its numbers. */
export interface HeadroomTrigger {
  node: string;
  /** Less free than headroomFraction × capacity: act at once (a full disk stops the node). */
  fired: boolean;
  usedBytes: number;
  capacityBytes: number | undefined;
  /** What it may hold and keep its headroom: capacity × (1 − headroomFraction). */
  limitBytes: number | undefined;
  reason: string;
}

/** Each node's headroom now; a node of unknown capacity never fires (and says so). */
export function headroomTriggers(spaces: readonly NodeSpace[], headroomFraction: number): HeadroomTrigger[] {
  assert(headroomFraction >= 0 && headroomFraction < 1, 'headroom is a fraction in [0, 1)');
  const percent = `${Math.round(headroomFraction * 100)} %`;
  return [...spaces].sort((a, b) => a.name.localeCompare(b.name)).map((space) => {
    if (space.capacityBytes === undefined) {
      return { node: space.name, fired: false, usedBytes: space.usedBytes, capacityBytes: undefined, limitBytes: undefined, reason: 'capacity unknown: headroom not watched' };
    }
    const limitBytes = space.capacityBytes * (1 - headroomFraction);
    const freeBytes = space.capacityBytes - space.usedBytes;
    const fired = space.usedBytes > limitBytes;
    return {
      node: space.name, fired, usedBytes: space.usedBytes, capacityBytes: space.capacityBytes, limitBytes,
      reason: fired
        ? `${formatBytes(freeBytes)} free of ${formatBytes(space.capacityBytes)}, below its ${percent} headroom: ${formatBytes(space.usedBytes - limitBytes)} to move off at once`
        : `${formatBytes(freeBytes)} free of ${formatBytes(space.capacityBytes)} (headroom ${percent} kept)`,
    };
  });
}

export interface HeadroomPlanInput {
  nodes: readonly LoadNode[];
  slots: readonly SlotLoadOf[];
  spaces: ReadonlyMap<string, NodeSpace>;
  headroomFraction: number;
  /** The nodes below their headroom (fired triggers). */
  short: readonly string[];
  excludedSlots?: ReadonlySet<number>;
  movesMax: number;
}

/**
 * Moves that bring nodes below their headroom back under their limit, with
 * as few bytes as it takes: from each short node (the most over first), the
 * smallest slot that covers what is left to free, or else its largest, to the
 * node with the most room left under its own limit (counting what it receives
 * in this plan), never to a short node nor one of weight 0. Pure and
 * deterministic; a node left short says why.
 */
export function planHeadroomMoves(input: HeadroomPlanInput): LoadPlan {
  assert(input.headroomFraction >= 0 && input.headroomFraction < 1, 'headroom is a fraction in [0, 1)');
  const excluded = input.excludedSlots ?? new Set<number>();
  const limitOf = (name: string): number | undefined => {
    const capacity = input.spaces.get(name)?.capacityBytes;
    return capacity === undefined ? undefined : capacity * (1 - input.headroomFraction);
  };
  const used = new Map([...input.spaces.values()].map((space) => [space.name, space.usedBytes]));
  const owners = new Map(input.slots.map((slot) => [slot.slot, slot.owner]));
  const short = new Set(input.short);
  const moves: LoadMove[] = [];
  const unresolved: Unresolved[] = [];
  const overBy = (name: string): number => (used.get(name) ?? 0) - (limitOf(name) ?? Infinity);
  const sources = [...short].sort((a, b) => overBy(b) - overBy(a) || a.localeCompare(b));
  for (const source of sources) {
    while (overBy(source) > 0) {
      if (moves.length >= input.movesMax) {
        unresolved.push({ node: source, reason: `the plan stops at ${input.movesMax} move(s), ${formatBytes(overBy(source))} still to move off` });
        break;
      }
      const targets = input.nodes.filter((node) => node.weight > 0 && node.name !== source && !short.has(node.name) && limitOf(node.name) !== undefined)
        .map((node) => ({ name: node.name, roomBytes: limitOf(node.name)! - (used.get(node.name) ?? 0) }))
        .sort((a, b) => b.roomBytes - a.roomBytes || a.name.localeCompare(b.name));
      const target = targets[0];
      const candidates = input.slots.filter((slot) => owners.get(slot.slot) === source && !excluded.has(slot.slot) && slot.bytes > 0 && target !== undefined && slot.bytes <= target.roomBytes);
      if (!target || candidates.length === 0) {
        unresolved.push({ node: source, reason: target === undefined ? 'no other node with a known capacity can take its slots' : `no slot of it fits in the room left on ${target.name} (${formatBytes(Math.max(0, target.roomBytes))}): add capacity or a node` });
        break;
      }
      const need = overBy(source);
      const covering = candidates.filter((slot) => slot.bytes >= need).sort((a, b) => a.bytes - b.bytes || a.slot - b.slot)[0];
      const slot = covering ?? candidates.sort((a, b) => b.bytes - a.bytes || a.slot - b.slot)[0]!;
      moves.push({ slot: slot.slot, from: source, to: target.name, bytes: slot.bytes, wave: 0, load: slot.load, loadRemoved: 0, benefitPerByte: 0 });
      owners.set(slot.slot, target.name);
      used.set(source, (used.get(source) ?? 0) - slot.bytes);
      used.set(target.name, (used.get(target.name) ?? 0) + slot.bytes);
    }
  }
  const concurrencyOf = new Map(input.nodes.map((node) => [node.name, node.concurrencyMax]));
  const scheduled = scheduleWaves(moves, (name) => concurrencyOf.get(name) ?? DRAINED_NODE_CONCURRENCY_MAX);
  const bySlot = new Map(moves.map((move) => [move.slot, move]));
  return {
    moves: scheduled.moves.map((move) => ({ ...bySlot.get(move.slot)!, wave: move.wave })),
    waves: scheduled.waves,
    overloaded: sources,
    before: nodeShares(input.nodes, input.slots),
    after: nodeShares(input.nodes, input.slots.map((slot) => ({ ...slot, owner: owners.get(slot.slot)! }))),
    unresolved,
  };
}
