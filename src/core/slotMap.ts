import { assert } from './assert.js';
import { badInput } from './errors.js';

/**
 * Slot → owning node, at one epoch. `owners[slot]` is the name of the node that
 * owns that slot; there are exactly `modulus` slots, so every slot has exactly
 * one owner by construction (invariant 1).
 */
export interface SlotMap {
  modulus: number;
  epoch: number;
  owners: readonly string[];
}

/** How many slots each node owns; only nodes that own at least one slot appear. */
export function slotCountsByNode(map: SlotMap): Map<string, number> {
  const countByNode = new Map<string, number>();
  for (const owner of map.owners) countByNode.set(owner, (countByNode.get(owner) ?? 0) + 1);
  return countByNode;
}

/**
 * Invariant 1: every slot has exactly one owner. A slot map read from the
 * catalog that breaks this is a bug, not an operating error, so this asserts.
 */
export function assertSlotMapValid(map: SlotMap): void {
  assert(Number.isSafeInteger(map.modulus) && map.modulus > 0, `slot map modulus ${map.modulus} is not a positive integer`);
  assert(Number.isSafeInteger(map.epoch) && map.epoch >= 0, `slot map epoch ${map.epoch} is not a non-negative integer`);
  assert(
    map.owners.length === map.modulus,
    `slot map has ${map.owners.length} owners for modulus ${map.modulus}`,
  );
  for (let slot = 0; slot < map.modulus; slot++) {
    const owner = map.owners[slot];
    assert(typeof owner === 'string' && owner.length > 0, `slot ${slot} has no owner`);
  }
}

/**
 * The slot map of a new cluster: slot s → nodes[s mod n]. Round robin rather
 * than contiguous blocks so each node's slots are spread over the slot space;
 * counts differ by at most one. Epoch 1: epoch 0 is "no map yet".
 */
export function initialSlotMap(nodeNames: readonly string[], modulus: number): SlotMap {
  if (!Number.isSafeInteger(modulus) || modulus <= 0) {
    throw badInput(`modulus ${modulus} is not a positive integer`, 'give a slot count such as 256 or 1024');
  }
  if (nodeNames.length === 0) throw badInput('no nodes were given for the new cluster', 'name at least one node');
  const seen = new Set<string>();
  for (const name of nodeNames) {
    if (name.length === 0) throw badInput('a node has an empty name', 'give every node a name');
    if (seen.has(name)) throw badInput(`node "${name}" is listed twice`, 'list each node once');
    seen.add(name);
  }
  const owners = Array.from({ length: modulus }, (_, slot) => nodeNames[slot % nodeNames.length]!);
  const map: SlotMap = { modulus, epoch: 1, owners };
  assertSlotMapValid(map);
  return map;
}
