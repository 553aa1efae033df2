import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { headroomTriggers, hotSlotSplit, planHeadroomMoves, type NodeSpace } from '../../src/planner/index.js';

const nodes = ['a', 'b', 'c'].map((name) => ({ name, weight: 1, concurrencyMax: 2 }));

describe('headroom triggers and moves', () => {
  it('fires below the headroom only, and says why a node of unknown capacity is not watched', () => {
    const triggers = headroomTriggers([
      { name: 'a', usedBytes: 95, capacityBytes: 100 }, { name: 'b', usedBytes: 89, capacityBytes: 100 }, { name: 'c', usedBytes: 5, capacityBytes: undefined },
    ], 0.1);
    expect(triggers.map((trigger) => [trigger.node, trigger.fired])).toEqual([['a', true], ['b', false], ['c', false]]);
    expect(triggers[0]!.limitBytes).toBeCloseTo(90);
    expect(triggers[2]!.reason).toBe('capacity unknown: headroom not watched');
  });

  it('moves the smallest slot that covers the shortfall to the node with most room', () => {
    const spaces = new Map<string, NodeSpace>([['a', { name: 'a', usedBytes: 95, capacityBytes: 100 }], ['b', { name: 'b', usedBytes: 50, capacityBytes: 100 }], ['c', { name: 'c', usedBytes: 20, capacityBytes: 100 }]]);
    const slots = [{ slot: 0, owner: 'a', load: 0, bytes: 30 }, { slot: 1, owner: 'a', load: 0, bytes: 8 }, { slot: 2, owner: 'a', load: 0, bytes: 4 }, { slot: 3, owner: 'b', load: 0, bytes: 50 }];
    const plan = planHeadroomMoves({ nodes, slots, spaces, headroomFraction: 0.1, short: ['a'], movesMax: 8 });
    expect(plan.moves.map((move) => [move.slot, move.from, move.to])).toEqual([[1, 'a', 'c']]);
    expect(plan.unresolved).toEqual([]);
  });

  it('never moves a slot off a node that is not short, never fills a target past its own limit, and says when it stops short', () => {
    const space = fc.record({ used: fc.integer({ min: 0, max: 1_000 }), capacity: fc.integer({ min: 1, max: 1_000 }) });
    fc.assert(fc.property(fc.tuple(space, space, space), fc.array(fc.record({ owner: fc.constantFrom('a', 'b', 'c'), bytes: fc.integer({ min: 0, max: 300 }) }), { maxLength: 12 }), (measured, drawn) => {
      const spaces = new Map(['a', 'b', 'c'].map((name, index) => [name, { name, usedBytes: measured[index]!.used, capacityBytes: measured[index]!.capacity }]));
      const short = headroomTriggers([...spaces.values()], 0.1).filter((trigger) => trigger.fired).map((trigger) => trigger.node);
      const slots = drawn.map((slot, index) => ({ slot: index, owner: slot.owner, load: 0, bytes: slot.bytes }));
      const plan = planHeadroomMoves({ nodes, slots, spaces, headroomFraction: 0.1, short, movesMax: 5 });
      const incoming = new Map<string, number>();
      for (const move of plan.moves) {
        expect(short).toContain(move.from);
        expect(short).not.toContain(move.to);
        incoming.set(move.to, (incoming.get(move.to) ?? 0) + move.bytes);
      }
      for (const [name, bytes] of incoming) expect(spaces.get(name)!.usedBytes + bytes).toBeLessThanOrEqual(spaces.get(name)!.capacityBytes! * 0.9 + 1e-9);
      const freed = new Map<string, number>();
      for (const move of plan.moves) freed.set(move.from, (freed.get(move.from) ?? 0) + move.bytes);
      for (const name of short) {
        const left = spaces.get(name)!.usedBytes - (freed.get(name) ?? 0) - spaces.get(name)!.capacityBytes! * 0.9;
        if (left > 1e-9) expect(plan.unresolved.map((entry) => entry.node)).toContain(name);
      }
    }));
  });
});

describe('hot slot split', () => {
  it('splits the hottest slot of an over-loaded node when it alone is over the node\'s share, its child to the node furthest under its share', () => {
    const slots = [{ slot: 0, owner: 'a', load: 70, bytes: 1 }, { slot: 1, owner: 'b', load: 20, bytes: 1 }, { slot: 2, owner: 'c', load: 10, bytes: 1 }];
    const split = hotSlotSplit({ nodes, slots, overloaded: ['a'], targets: ['a', 'b', 'c'], splittable: () => true });
    expect(split).toMatchObject({ slot: 0, from: 'a', to: 'c', load: 70 });
    expect(split!.fairLoad).toBeCloseTo(100 / 3);
    // Not splittable (the largest modulus), cooling, or within the node's share: no split.
    expect(hotSlotSplit({ nodes, slots, overloaded: ['a'], targets: ['b', 'c'], splittable: () => false })).toBeUndefined();
    expect(hotSlotSplit({ nodes, slots, overloaded: ['a'], targets: ['b', 'c'], excludedSlots: new Set([0]), splittable: () => true })).toBeUndefined();
    const spread = [{ slot: 0, owner: 'a', load: 30, bytes: 1 }, { slot: 3, owner: 'a', load: 30, bytes: 1 }, { slot: 1, owner: 'b', load: 20, bytes: 1 }, { slot: 2, owner: 'c', load: 20, bytes: 1 }];
    expect(hotSlotSplit({ nodes, slots: spread, overloaded: ['a'], targets: ['b', 'c'], splittable: () => true })).toBeUndefined();
  });
});
