import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../src/core/assert.js';
import { ReshardError } from '../../src/core/errors.js';
import { assertSlotMapValid, initialSlotMap, slotCountsByNode, type SlotMap } from '../../src/core/slotMap.js';

describe('initialSlotMap', () => {
  it('deals slots round robin so each node has slots all over the slot space', () => {
    const map = initialSlotMap(['a', 'b', 'c'], 8);
    expect(map).toEqual({ modulus: 8, epoch: 1, owners: ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b'] });
    expect(slotCountsByNode(map)).toEqual(new Map([['a', 3], ['b', 3], ['c', 2]]));
  });

  it('is balanced to within one slot for any node count and modulus', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 2048 }), (nodeCount, modulus) => {
        const names = Array.from({ length: nodeCount }, (_, i) => `node${i}`);
        const map = initialSlotMap(names, modulus);
        assertSlotMapValid(map);
        const counts = names.map((name) => slotCountsByNode(map).get(name) ?? 0);
        expect(counts.reduce((a, b) => a + b, 0)).toBe(modulus);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        expect(initialSlotMap(names, modulus)).toEqual(map);
      }),
    );
  });

  it.each([
    [['a'], 0, /modulus 0/],
    [['a'], 2.5, /modulus 2.5/],
    [[], 8, /no nodes/],
    [['a', 'a'], 8, /"a" is listed twice/],
    [[''], 8, /empty name/],
  ])('rejects %j with modulus %s', (names, modulus, message) => {
    expect(() => initialSlotMap(names, modulus)).toThrow(ReshardError);
    expect(() => initialSlotMap(names, modulus)).toThrow(message);
  });
});

describe('assertSlotMapValid', () => {
  const good: SlotMap = { modulus: 3, epoch: 0, owners: ['a', 'b', 'a'] };
  it('accepts a map where every slot has one owner', () => {
    expect(() => assertSlotMapValid(good)).not.toThrow();
  });
  it.each<[string, SlotMap]>([
    ['too few owners', { ...good, owners: ['a', 'b'] }],
    ['an empty owner', { ...good, owners: ['a', '', 'b'] }],
    ['a zero modulus', { modulus: 0, epoch: 0, owners: [] }],
    ['a fractional modulus', { ...good, modulus: 2.5 }],
    ['a negative epoch', { ...good, epoch: -1 }],
  ])('rejects %s as an invariant violation', (_, map) => {
    expect(() => assertSlotMapValid(map)).toThrow(InvariantViolation);
  });
});
