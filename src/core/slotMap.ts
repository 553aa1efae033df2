import { assert } from './assert.js';
import { badInput } from './errors.js';
import { slotOf, slotOfKey, type ShardKeyType, type ShardKeyValue } from './hash.js';

/**
 * Slot → owning node, at one epoch.
 *
 * A slot is one hash partition (modulus, remainder). A cluster starts with
 * `modulus` equal slots; a slot can later be split in two (r of m → r and
 * r + m of 2m) and two such siblings merged back. In a valid map no two slots
 * share a remainder (they would overlap), so a slot's id *is* its remainder:
 * ids 0..modulus-1 always exist (the lowest child of a split keeps its
 * parent's id) and a split adds id r + m.
 *
 * `owners[id]` is the owning node of slot `id`, undefined where no slot has
 * that id (only above `modulus`, after splits). `slotModuli[id]` is that
 * slot's modulus; absent (or undefined at an id) means `modulus`, so a map
 * that was never split is exactly what it was before splits existed.
 */
export interface SlotMap {
  /** The cluster's modulus (its slot count at init): the smallest modulus any slot has. */
  modulus: number;
  epoch: number;
  owners: readonly (string | undefined)[];
  slotModuli?: readonly (number | undefined)[];
}

/** The ids of the map's slots, ascending. */
export function slotIds(map: SlotMap): number[] {
  const ids: number[] = [];
  map.owners.forEach((owner, id) => {
    if (owner !== undefined) ids.push(id);
  });
  return ids;
}

/** Whether the map has a slot with this id. */
export function hasSlot(map: SlotMap, id: number): boolean {
  return Number.isSafeInteger(id) && id >= 0 && map.owners[id] !== undefined;
}

/** The owner of slot `id`; a bug (asserted) if the map has no such slot. */
export function slotOwner(map: SlotMap, id: number): string {
  const owner = map.owners[id];
  assert(owner !== undefined, `slot ${id} exists in the slot map`);
  return owner;
}

/** The modulus of slot `id` (its PostgreSQL partition bound is MODULUS this, REMAINDER id). */
export function slotModulus(map: SlotMap, id: number): number {
  return map.slotModuli?.[id] ?? map.modulus;
}

/** Whether any slot has a modulus other than the cluster's (the map was split). */
export function isMixedSlotMap(map: SlotMap): boolean {
  return (map.slotModuli ?? []).some((modulus, id) => modulus !== undefined && modulus !== map.modulus && map.owners[id] !== undefined);
}

/** The distinct moduli of the map's slots, ascending (one chain of divisors in a valid map). */
export function slotModuliAscending(map: SlotMap): number[] {
  if (!map.slotModuli) return [map.modulus];
  return [...new Set(slotIds(map).map((id) => slotModulus(map, id)))].sort((a, b) => a - b);
}

/** The largest modulus of the map: a key's hash modulo this decides its slot. */
export function routingModulus(map: SlotMap): number {
  const moduli = slotModuliAscending(map);
  return moduli[moduli.length - 1]!;
}

/**
 * The slot whose partition holds a row whose hash modulo `routingModulus(map)`
 * is `hashRemainder`. PostgreSQL routes a row of a hash-partitioned table by
 * `hash mod greatest modulus` into a table filled by every partition (m, r) at
 * r, r + m, r + 2m …; the moduli divide each other, so that is the one slot
 * (m, r) with r = hash mod m, found by trying the moduli in ascending order.
 */
export function slotOfRemainder(map: SlotMap, hashRemainder: number): number {
  for (const modulus of slotModuliAscending(map)) {
    const id = hashRemainder % modulus;
    if (map.owners[id] !== undefined && slotModulus(map, id) === modulus) return id;
  }
  assert(false, `no slot of the map holds hash remainder ${hashRemainder}`);
}

/**
 * A key's slot in O(1) for a hot path: the hash modulo `modulus`, then
 * `slotOfRemainder[remainder]` (absent for a map never split: the remainder is the slot).
 */
export interface SlotLookup {
  modulus: number;
  slotOfRemainder?: Int32Array;
}

export function slotLookup(map: SlotMap): SlotLookup {
  if (!isMixedSlotMap(map)) return { modulus: map.modulus };
  const modulus = routingModulus(map);
  const table = new Int32Array(modulus);
  for (const id of slotIds(map)) {
    for (let remainder = id; remainder < modulus; remainder += slotModulus(map, id)) table[remainder] = id;
  }
  return { modulus, slotOfRemainder: table };
}

/** A key's slot through a `slotLookup`. */
export function slotOfKeyByLookup(lookup: SlotLookup, types: readonly ShardKeyType[], values: readonly ShardKeyValue[]): number {
  const remainder = slotOfKey(types, values, lookup.modulus);
  return lookup.slotOfRemainder ? lookup.slotOfRemainder[remainder]! : remainder;
}

/** A one-column key's slot through a `slotLookup`, without an array per call (the router's hot path). */
export function slotOfValueByLookup(lookup: SlotLookup, type: ShardKeyType, value: ShardKeyValue): number {
  const remainder = slotOf(type, value, lookup.modulus);
  return lookup.slotOfRemainder ? lookup.slotOfRemainder[remainder]! : remainder;
}

/** A key's slot under the map, exactly as PostgreSQL routes the row. */
export function slotOfKeyIn(map: SlotMap, types: readonly ShardKeyType[], values: readonly ShardKeyValue[]): number {
  return slotOfRemainder(map, slotOfKey(types, values, routingModulus(map)));
}

/**
 * The share of the hash space slot `id` holds, in units of one slot of the
 * cluster's modulus: 1 for an unsplit slot, 1/2 for a child of one split.
 */
export function slotWeight(map: SlotMap, id: number): number {
  return map.modulus / slotModulus(map, id);
}

/** The two slots a split of `id` gives: itself at twice its modulus, and id + its modulus. */
export function splitChildren(map: SlotMap, id: number): { low: number; high: number; modulus: number } {
  const modulus = slotModulus(map, id);
  return { low: id, high: id + modulus, modulus: modulus * 2 };
}

/**
 * The slot a merge of `id` gives back and the sibling it merges with, or
 * undefined when `id` is a slot of the cluster's modulus (never split) or its
 * sibling has a different modulus (split further: merge that first).
 */
export function mergeParent(map: SlotMap, id: number): { parent: number; sibling: number; modulus: number } | undefined {
  const modulus = slotModulus(map, id);
  if (modulus <= map.modulus || modulus % 2 !== 0) return undefined;
  const half = modulus / 2;
  const parent = id % half;
  const sibling = id < half ? id + half : id - half;
  if (map.owners[sibling] === undefined || slotModulus(map, sibling) !== modulus) return undefined;
  return { parent, sibling, modulus: half };
}

/** The map after slot `id` is split: both children with `id`'s owner unless `highOwner` is given, epoch unchanged. */
export function splitSlotMap(map: SlotMap, id: number, highOwner?: string): SlotMap {
  const owner = slotOwner(map, id);
  const { high, modulus } = splitChildren(map, id);
  assert(map.owners[high] === undefined, `slot ${high} is free for the split of slot ${id}`);
  const owners = withLength([...map.owners], high + 1);
  const moduli = withLength(Array.from({ length: map.owners.length }, (_, at) => map.slotModuli?.[at]), high + 1);
  owners[high] = highOwner ?? owner;
  moduli[id] = modulus;
  moduli[high] = modulus;
  return normalized({ modulus: map.modulus, epoch: map.epoch, owners, slotModuli: moduli });
}

/** The map after slot `id` and its sibling are merged into their parent (owned by `id`'s owner), epoch unchanged. */
export function mergeSlotMap(map: SlotMap, id: number): SlotMap {
  const merge = mergeParent(map, id);
  assert(merge, `slot ${id} has a sibling to merge with`);
  const owners = [...map.owners];
  const moduli = Array.from({ length: map.owners.length }, (_, at) => map.slotModuli?.[at]);
  const owner = slotOwner(map, id);
  const gone = merge.parent === id ? merge.sibling : id;
  owners[merge.parent] = owner;
  delete owners[gone];
  delete moduli[gone];
  moduli[merge.parent] = merge.modulus;
  return normalized({ modulus: map.modulus, epoch: map.epoch, owners, slotModuli: moduli });
}

/** The owners and moduli trimmed after their last slot, moduli equal to the cluster's left out (and dropped when all are). */
function normalized(map: SlotMap): SlotMap {
  const owners = [...map.owners];
  while (owners.length > map.modulus && owners[owners.length - 1] === undefined) owners.pop();
  const moduli = Array.from({ length: owners.length }, (_, id) => {
    const modulus = map.slotModuli?.[id];
    return owners[id] === undefined || modulus === map.modulus ? undefined : modulus;
  });
  const sparse = (values: (string | number | undefined)[]): void => {
    values.forEach((value, id) => {
      if (value === undefined) delete values[id];
    });
  };
  sparse(owners);
  sparse(moduli);
  const mixed = moduli.some((modulus) => modulus !== undefined);
  return mixed ? { modulus: map.modulus, epoch: map.epoch, owners, slotModuli: moduli } : { modulus: map.modulus, epoch: map.epoch, owners };
}

function withLength<T>(values: T[], length: number): T[] {
  if (values.length < length) values.length = length;
  return values;
}

/** How many slots each node owns; only nodes that own at least one slot appear. */
export function slotCountsByNode(map: SlotMap): Map<string, number> {
  const countByNode = new Map<string, number>();
  for (const id of slotIds(map)) {
    const owner = map.owners[id]!;
    countByNode.set(owner, (countByNode.get(owner) ?? 0) + 1);
  }
  return countByNode;
}

/** The nodes that own at least one slot, each once. */
export function slotOwners(map: SlotMap): string[] {
  return [...slotCountsByNode(map).keys()];
}

/**
 * Invariants 1 and 8: every slot has exactly one owner, and the slots'
 * (modulus, remainder) pairs partition the hash space with moduli in one
 * chain of divisors, as PostgreSQL's partitions must. A slot map read from
 * the catalog that breaks this is a bug, not an operating error, so this asserts.
 */
export function assertSlotMapValid(map: SlotMap): void {
  assert(Number.isSafeInteger(map.modulus) && map.modulus > 0, `slot map modulus ${map.modulus} is not a positive integer`);
  assert(Number.isSafeInteger(map.epoch) && map.epoch >= 0, `slot map epoch ${map.epoch} is not a non-negative integer`);
  if (!map.slotModuli) {
    assert(
      map.owners.length === map.modulus,
      `slot map has ${map.owners.length} owners for modulus ${map.modulus}`,
    );
  }
  const ids = slotIds(map);
  for (let slot = 0; slot < map.modulus; slot++) {
    const owner = map.owners[slot];
    assert(typeof owner === 'string' && owner.length > 0, `slot ${slot} has no owner`);
  }
  for (const id of ids) assert(map.owners[id]!.length > 0, `slot ${id} has no owner`);
  if (!map.slotModuli) return;
  const moduli = slotModuliAscending(map);
  for (let at = 1; at < moduli.length; at++) {
    assert(moduli[at]! % moduli[at - 1]! === 0, `slot moduli ${moduli[at - 1]} and ${moduli[at]} are not one chain of divisors`);
  }
  assert(moduli[0]! >= map.modulus, `a slot has modulus ${moduli[0]}, below the cluster's ${map.modulus}`);
  // Each slot (m, r) covers the remainders r, r + m, … below the largest modulus: each exactly once.
  const largest = moduli[moduli.length - 1]!;
  const covered = new Uint8Array(largest);
  let coveredCount = 0;
  for (const id of ids) {
    const modulus = slotModulus(map, id);
    assert(Number.isSafeInteger(modulus) && id < modulus, `slot ${id} has modulus ${modulus}, not above its remainder`);
    for (let remainder = id; remainder < largest; remainder += modulus) {
      assert(covered[remainder] === 0, `slots overlap at hash remainder ${remainder} of ${largest}`);
      covered[remainder] = 1;
      coveredCount++;
    }
  }
  assert(coveredCount === largest, `the slots cover ${coveredCount} of ${largest} hash remainders`);
}

/**
 * The slot map of a new cluster: slot s → nodes[s mod n]. Round robin rather
 * than contiguous blocks so each node's slots are spread over the slot space;
 * counts differ by at most one. Epoch 1: epoch 0 is "no map yet".
 */
export function initialSlotMap(nodeNames: readonly string[], modulus: number): SlotMap & { owners: string[] } {
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
  const map = { modulus, epoch: 1, owners };
  assertSlotMapValid(map);
  return map;
}
