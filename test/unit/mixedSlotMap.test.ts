import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../src/core/assert.js';
import { slotOf } from '../../src/core/hash.js';
import {
  assertSlotMapValid, initialSlotMap, isMixedSlotMap, mergeParent, mergeSlotMap, routingModulus, slotIds, slotModulus,
  slotOfKeyIn, slotOfRemainder, slotWeight, splitChildren, splitSlotMap, type SlotMap,
} from '../../src/core/slotMap.js';

/** A map reached from an initial one by random splits and merges (ops pick a slot by index among the map's slots). */
const mixedMap = fc.record({
  modulus: fc.constantFrom(1, 2, 3, 4, 8, 12, 16),
  ops: fc.array(fc.record({ split: fc.boolean(), pick: fc.nat() }), { maxLength: 24 }),
}).map(({ modulus, ops }) => {
  let map: SlotMap = initialSlotMap(['a', 'b', 'c'], modulus);
  for (const op of ops) {
    const ids = slotIds(map);
    const id = ids[op.pick % ids.length]!;
    if (op.split && routingModulus(map) <= 64 * modulus) map = splitSlotMap(map, id, op.pick % 2 === 0 ? undefined : 'd');
    else if (!op.split && mergeParent(map, id)) map = mergeSlotMap(map, id);
  }
  return map;
});

/** The slot of a hash by definition: the one (m, r) with hash mod m = r. */
function slotByDefinition(map: SlotMap, hash: number): number[] {
  return slotIds(map).filter((id) => hash % slotModulus(map, id) === id);
}

describe('mixed-moduli slot map', () => {
  it('stays a partition of the hash space under any splits and merges', () => {
    fc.assert(fc.property(mixedMap, (map) => {
      assertSlotMapValid(map);
      const weights = slotIds(map).reduce((total, id) => total + slotWeight(map, id), 0);
      expect(weights).toBe(map.modulus);
    }), { numRuns: 500 });
  });

  it('finds a hash its one slot, the one PostgreSQL routes it to', () => {
    fc.assert(fc.property(mixedMap, fc.array(fc.nat({ max: 2 ** 31 - 1 }), { minLength: 1, maxLength: 50 }), (map, hashes) => {
      const largest = routingModulus(map);
      for (const hash of hashes) {
        expect(slotByDefinition(map, hash)).toEqual([slotOfRemainder(map, hash % largest)]);
      }
    }), { numRuns: 300 });
  });

  it('routes a key as its slot\'s own modulus does', () => {
    fc.assert(fc.property(mixedMap, fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { minLength: 1, maxLength: 30 }), (map, keys) => {
      for (const key of keys) {
        const slot = slotOfKeyIn(map, ['bigint'], [key]);
        expect(slotOf('bigint', key, slotModulus(map, slot))).toBe(slot);
      }
    }), { numRuns: 200 });
  });

  it('a split moves only the parent\'s hashes, and a merge gives the parent back exactly', () => {
    fc.assert(fc.property(mixedMap, fc.nat(), fc.array(fc.nat({ max: 2 ** 31 - 1 }), { maxLength: 40 }), (map, pick, hashes) => {
      const ids = slotIds(map);
      const id = ids[pick % ids.length]!;
      const split = splitSlotMap(map, id, 'e');
      const { low, high } = splitChildren(map, id);
      for (const hash of hashes) {
        const before = slotOfRemainder(map, hash % routingModulus(map));
        const after = slotOfRemainder(split, hash % routingModulus(split));
        if (before === id) expect([low, high]).toContain(after);
        else expect(after).toBe(before);
      }
      expect(split.owners[high]).toBe('e');
      expect(mergeSlotMap({ ...split, owners: split.owners.map((owner, at) => (at === high ? map.owners[id] : owner)) }, high)).toEqual(map);
      expect(isMixedSlotMap(split)).toBe(true);
    }), { numRuns: 300 });
  });

  it('keeps a never-split map in its old form', () => {
    const map = initialSlotMap(['a', 'b'], 4);
    const back = mergeSlotMap(splitSlotMap(map, 1), 5);
    expect(back).toEqual(map);
    expect(back.slotModuli).toBeUndefined();
  });

  it('merges only siblings of one modulus, never below the cluster\'s', () => {
    const map = initialSlotMap(['a'], 4);
    expect(mergeParent(map, 1)).toBeUndefined();
    const once = splitSlotMap(map, 1);
    expect(mergeParent(once, 5)).toEqual({ parent: 1, sibling: 1, modulus: 4 });
    const twice = splitSlotMap(once, 5);
    expect(mergeParent(twice, 1)).toBeUndefined(); // sibling 5 is split further
    expect(mergeParent(twice, 13)).toEqual({ parent: 5, sibling: 5, modulus: 8 });
  });

  it('rejects overlapping slots and broken divisor chains', () => {
    const overlap: SlotMap = { modulus: 2, epoch: 1, owners: ['a', 'a', 'a'], slotModuli: [undefined, 4, 4] };
    expect(() => assertSlotMapValid(overlap)).toThrow(InvariantViolation);
    const gap: SlotMap = { modulus: 2, epoch: 1, owners: ['a', 'a'], slotModuli: [4, undefined] };
    expect(() => assertSlotMapValid(gap)).toThrow(/cover/);
    const chain: SlotMap = { modulus: 2, epoch: 1, owners: ['a', 'a', 'a', undefined, 'a', 'a'], slotModuli: [4, 6, 4, undefined, undefined, 6] };
    expect(() => assertSlotMapValid(chain)).toThrow(/chain of divisors/);
  });
});

describe('leaf names of split slots', () => {
  it('name every slot id once, padded to the cluster\'s modulus, and read back', async () => {
    const { leafName, slotOfLeafName } = await import('../../src/node/leafName.js');
    const { stagedLeafName, retiredLeafName } = await import('../../src/node/splitLeaves.js');
    expect(leafName('users', 5, 16)).toBe('users_s0005');
    expect(leafName('users', 21, 16)).toBe('users_s0021');
    expect(leafName('users', 65_541, 65_536)).toBe('users_s65541');
    fc.assert(fc.property(fc.constantFrom(8, 256, 1000, 16_384), fc.nat({ max: 2 ** 20 }), (modulus, slot) => {
      expect(slotOfLeafName('users', leafName('users', slot, modulus), modulus)).toBe(slot);
    }));
    const exchange = { clusterModulus: 16, replaced: [5], replacements: [{ slot: 5, modulus: 32 }, { slot: 21, modulus: 32 }], kind: 'split' as const };
    expect(stagedLeafName({ name: 'users' }, exchange, 5)).toBe('users_s0005_split');
    expect(stagedLeafName({ name: 'users' }, exchange, 21)).toBe('users_s0021');
    expect(retiredLeafName({ name: 'users' }, exchange, 5)).toBe('users_s0005_presplit');
    // Not a leaf name: leftovers of an exchange are never taken for a slot's leaf.
    expect(slotOfLeafName('users', 'users_s0005_presplit', 16)).toBeUndefined();
  });
});
