import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyHeadroom, capacityUnknown, capacityUnknownWarning, planRebalance, type NodeSpace } from '../../src/planner/index.js';

const rule = { headroomFraction: 0.1, walRetainedBytesMax: 1_000 };

function growPlan(slotBytes: number[]) {
  const owners = slotBytes.map((_, slot) => `n${(slot % 3) + 1}`);
  return planRebalance({
    slotMap: { modulus: slotBytes.length, epoch: 1, owners },
    nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ name, weight: 1, concurrencyMax: 2 })),
    slotBytes,
  });
}

describe('applyHeadroom', () => {
  it('keeps the smallest moves that fit the receiver and says why the rest wait', () => {
    const plan = growPlan(Array.from({ length: 16 }, (_, slot) => 100 * (slot + 1)));
    const spaces = new Map<string, NodeSpace>([['n4', { name: 'n4', usedBytes: 0, capacityBytes: 1_000 }]]);
    const { plan: fitted, deferred } = applyHeadroom(plan, spaces, rule);
    const incoming = fitted.moves.reduce((sum, move) => sum + move.bytes, 0);
    expect(incoming).toBeLessThanOrEqual(900);
    expect(fitted.moves.length + deferred.length).toBe(plan.moves.length);
    expect(deferred.length).toBeGreaterThan(0);
    expect(deferred[0]!.reason).toMatch(/^n4 would hold [\d.]+ k?B of 1\.0 kB, leaving less than the 10 % headroom$/);
    expect(fitted.bytesMoved).toBe(incoming);
    expect(fitted.slotsMoved).toBe(fitted.moves.length);
  });

  it('starts no move from a sender without room for the WAL a move may retain', () => {
    const plan = growPlan(Array.from({ length: 12 }, () => 10));
    const spaces = new Map<string, NodeSpace>([['n1', { name: 'n1', usedBytes: 500, capacityBytes: 1_200 }]]);
    const { plan: fitted, deferred } = applyHeadroom(plan, spaces, rule);
    expect(fitted.moves.every((move) => move.from !== 'n1')).toBe(true);
    expect(deferred.every((move) => move.from === 'n1')).toBe(true);
    expect(deferred[0]?.reason).toMatch(/^n1 holds 500 B of 1\.2 kB and has no room for the 1\.0 kB of WAL a move may retain/);
  });

  it('never takes a receiver past capacity × (1 − headroom), keeps everything when capacity is unknown', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 8, maxLength: 64 }),
      fc.integer({ min: 0, max: 50_000 }),
      fc.integer({ min: 1, max: 200_000 }),
      fc.double({ min: 0, max: 0.9, noNaN: true }),
      (slotBytes, usedBytes, capacityBytes, headroomFraction) => {
        const plan = growPlan(slotBytes);
        const unlimited = applyHeadroom(plan, new Map(), { headroomFraction, walRetainedBytesMax: 0 });
        expect(unlimited.plan.moves).toEqual(plan.moves);
        const spaces = new Map<string, NodeSpace>([['n4', { name: 'n4', usedBytes, capacityBytes }]]);
        const { plan: fitted, deferred } = applyHeadroom(plan, spaces, { headroomFraction, walRetainedBytesMax: 0 });
        const incoming = fitted.moves.filter((move) => move.to === 'n4').reduce((sum, move) => sum + move.bytes, 0);
        if (incoming > 0) expect(usedBytes + incoming).toBeLessThanOrEqual(capacityBytes * (1 - headroomFraction) + 1e-6);
        expect([...fitted.moves, ...deferred].map((move) => move.slot).sort((a, b) => a - b)).toEqual(plan.moves.map((move) => move.slot).sort((a, b) => a - b));
      },
    ));
  });
});

describe('capacity unknown', () => {
  it('names every node of unknown capacity, and the warning names each and its fix', () => {
    const spaces: NodeSpace[] = [
      { name: 'n4', usedBytes: 10, capacityBytes: undefined },
      { name: 'n1', usedBytes: 10, capacityBytes: 1_000 },
      { name: 'n2', usedBytes: 10, capacityBytes: undefined },
    ];
    expect(capacityUnknown(spaces)).toEqual(['n2', 'n4']);
    expect(capacityUnknown([])).toEqual([]);
    const one = capacityUnknownWarning(['n4'], 0.1);
    expect(one.message).toBe('the capacity of n4 is unknown (a server not on this machine and no --capacity given): the 10 % disk headroom is not checked on it, so a move could fill its disk');
    expect(one.fix).toMatch(/^give it a capacity: `reshard node set n4 --capacity 500GB`/);
    const two = capacityUnknownWarning(['n2', 'n4'], 0.25);
    expect(two.message).toMatch(/^the capacity of n2, n4 is unknown .* the 25 % disk headroom is not checked on them/);
    expect(two.fix).toContain('`reshard node set n2 --capacity 500GB`, `reshard node set n4 --capacity 500GB`');
  });
});
