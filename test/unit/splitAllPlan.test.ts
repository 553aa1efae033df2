import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planSplitAll } from '../../src/admin/splitAllSlots.js';
import { assertSlotMapValid, initialSlotMap, slotIds, slotModulus, splitSlotMap, type SlotMap } from '../../src/core/slotMap.js';

/** The map after every split of the plan, applied one at a time (as split --all runs them). */
function applied(map: SlotMap): SlotMap {
  return planSplitAll(map).reduce((current, split) => {
    const next = splitSlotMap(current, split.slot);
    assertSlotMapValid(next);
    return next;
  }, map);
}

describe('split --all plan', () => {
  it('splits every slot of a map never split: twice the slots, every modulus doubled, owners kept', () => {
    const map = initialSlotMap(['n1', 'n2', 'n3'], 64);
    const plan = planSplitAll(map);
    expect(plan).toHaveLength(64);
    expect(plan[5]).toEqual({ kind: 'split', slot: 5, node: 'n3', replaced: [5], replacements: [{ slot: 5, modulus: 128 }, { slot: 69, modulus: 128 }], replacedModulus: 64 });
    const after = applied(map);
    expect(slotIds(after)).toHaveLength(128);
    for (const slot of slotIds(after)) {
      expect(slotModulus(after, slot)).toBe(128);
      expect(after.owners[slot]).toBe(map.owners[slot % 64]);
    }
  });

  it('on any mixed map splits exactly the slots of the smallest modulus, so after it at most one modulus less remains', () => {
    fc.assert(fc.property(fc.array(fc.nat(63), { maxLength: 40 }), (picks) => {
      // A random mixed map: slots split one after another (some twice), from 16 slots.
      let map: SlotMap = initialSlotMap(['a', 'b'], 16);
      for (const pick of picks) {
        const ids = slotIds(map);
        const slot = ids[pick % ids.length]!;
        if (slotModulus(map, slot) < 64) map = splitSlotMap(map, slot);
      }
      const smallest = Math.min(...slotIds(map).map((slot) => slotModulus(map, slot)));
      const plan = planSplitAll(map);
      expect(plan.map((split) => split.slot)).toEqual(slotIds(map).filter((slot) => slotModulus(map, slot) === smallest));
      const after = applied(map);
      for (const slot of slotIds(after)) expect(slotModulus(after, slot)).toBeGreaterThanOrEqual(2 * smallest);
      // Hash space is conserved: the slots' shares still sum to the whole.
      expect(slotIds(after).reduce((sum, slot) => sum + 1 / slotModulus(after, slot), 0)).toBeCloseTo(1, 9);
    }), { numRuns: 200 });
  });
});
