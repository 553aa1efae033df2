import { badInput } from '../core/errors.js';
import { assertSlotMapValid } from '../core/slotMap.js';
import type { PlanInput, PlannerNode } from './types.js';

/**
 * Rejects input the planner cannot plan for, with one line per problem, and
 * returns the target nodes sorted by name so that nothing downstream depends on
 * the order the caller listed them in.
 */
export function validatePlanInput(input: PlanInput): PlannerNode[] {
  const { slotMap, nodes, slotBytes } = input;
  const modulus = slotMap.modulus;
  if (!Number.isSafeInteger(modulus) || modulus <= 0) {
    throw badInput(`modulus ${modulus} is not a positive integer`, 'use the slot count the cluster was created with, such as 256 or 1024');
  }
  if (!Number.isSafeInteger(slotMap.epoch) || slotMap.epoch < 0) {
    throw badInput(`slot map epoch ${slotMap.epoch} is not a non-negative integer`, 'read the slot map from the catalog');
  }
  if (slotMap.slotModuli === undefined && slotMap.owners.length !== modulus) {
    throw badInput(`the slot map has ${slotMap.owners.length} owners for ${modulus} slots`, 'give exactly one owner per slot');
  }
  // Ids above the cluster's modulus exist only after splits; every id below it is a slot.
  Array.from({ length: modulus }, (_, slot) => slotMap.owners[slot]).forEach((owner, slot) => {
    if (typeof owner !== 'string' || owner.length === 0) {
      throw badInput(`slot ${slot} has no owner in the slot map`, 'give every slot an owning node');
    }
  });
  assertSlotMapValid(slotMap);

  if (nodes.length === 0) throw badInput('the target node set is empty', 'name at least one node with a positive weight');
  const seen = new Set<string>();
  for (const node of nodes) {
    if (typeof node.name !== 'string' || node.name.length === 0) {
      throw badInput('a target node has an empty name', 'give every node a name');
    }
    if (seen.has(node.name)) throw badInput(`node "${node.name}" is listed twice in the target set`, 'list each node once');
    seen.add(node.name);
    if (typeof node.weight !== 'number' || !Number.isFinite(node.weight) || node.weight < 0) {
      throw badInput(`node "${node.name}" has weight ${node.weight}`, 'use a finite weight >= 0 (0 drains the node)');
    }
    if (!Number.isSafeInteger(node.concurrencyMax) || node.concurrencyMax < 1) {
      throw badInput(`node "${node.name}" has concurrencyMax ${node.concurrencyMax}`, 'use a whole number of concurrent moves >= 1');
    }
    if (node.capacityBytes !== undefined && !(Number.isFinite(node.capacityBytes) && node.capacityBytes >= 0)) {
      throw badInput(`node "${node.name}" has capacityBytes ${node.capacityBytes}`, 'use a byte count >= 0, or leave it unset for no limit');
    }
  }
  if (!nodes.some((node) => node.weight > 0)) {
    throw badInput('no target node has a positive weight', 'give at least one node a weight > 0');
  }

  if (slotBytes.length !== slotMap.owners.length) {
    throw badInput(`slotBytes has ${slotBytes.length} entries for ${slotMap.owners.length} slots`, 'give one byte count per slot');
  }
  slotBytes.forEach((bytes, slot) => {
    if (slotMap.owners[slot] === undefined) return;
    if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) {
      throw badInput(`slot ${slot} has size ${bytes} bytes`, 'give every slot a byte count >= 0');
    }
  });

  return [...nodes].sort((a, b) => compareNames(a.name, b.name));
}

/** Code-unit order, not locale order: a plan must not depend on the machine's locale. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
