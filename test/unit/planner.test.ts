import { describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/core/bytes.js';
import { ReshardError } from '../../src/core/errors.js';
import { initialSlotMap, slotCountsByNode, type SlotMap } from '../../src/core/slotMap.js';
import { planRebalance, type PlanInput, type PlannerNode } from '../../src/planner/index.js';

const equalNodes = (names: readonly string[], concurrencyMax = 2): PlannerNode[] =>
  names.map((name) => ({ name, weight: 1, concurrencyMax }));
const zeros = (modulus: number): number[] => new Array<number>(modulus).fill(0);

function countsAfter(input: PlanInput, plan: ReturnType<typeof planRebalance>): Map<string, number> {
  const owners = [...input.slotMap.owners];
  for (const move of plan.moves) owners[move.slot] = move.to;
  return slotCountsByNode({ ...input.slotMap, owners });
}

function expectError(input: PlanInput, code: string, message: RegExp): void {
  try {
    planRebalance(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ReshardError);
    expect((error as ReshardError).code).toBe(code);
    expect((error as ReshardError).message).toMatch(message);
    expect((error as ReshardError).line()).not.toContain('\n');
    return;
  }
  expect.fail(`expected a ${code} error matching ${message}`);
}

describe('planRebalance: examples', () => {
  it('adding a 4th node to 3 with M=256 moves exactly 64 slots, all onto the new node', () => {
    const input: PlanInput = {
      slotMap: initialSlotMap(['a', 'b', 'c'], 256),
      nodes: equalNodes(['a', 'b', 'c', 'd']),
      slotBytes: zeros(256),
    };
    const plan = planRebalance(input);
    expect(plan.slotsMoved).toBe(64);
    expect(plan.moves.every((move) => move.to === 'd')).toBe(true);
    expect(plan.targetSlotCounts).toEqual({ a: 64, b: 64, c: 64, d: 64 });
    expect(countsAfter(input, plan)).toEqual(new Map([['a', 64], ['b', 64], ['c', 64], ['d', 64]]));
    // d is in all 64 moves and takes 2 at a time.
    expect(plan.waves).toBe(32);
    expect(plan.baseEpoch).toBe(1);
  });

  it('adding 2 nodes to 3 with M=1024 moves ⌊2·1024/5⌋ = 409 slots', () => {
    const plan = planRebalance({
      slotMap: initialSlotMap(['a', 'b', 'c'], 1024),
      nodes: equalNodes(['a', 'b', 'c', 'd', 'e']),
      slotBytes: zeros(1024),
    });
    expect(plan.slotsMoved).toBe(409);
    // The rounded-up shares go to the nodes that already hold more, which saves moves.
    expect(plan.targetSlotCounts).toEqual({ a: 205, b: 205, c: 205, d: 205, e: 204 });
  });

  it.each([
    ['left out of the target set', equalNodes(['a', 'b', 'd'])],
    ['given weight 0', [...equalNodes(['a', 'b', 'd']), { name: 'c', weight: 0, concurrencyMax: 2 }]],
  ])('removing a node (%s) moves exactly its slots', (_, nodes) => {
    const slotMap = initialSlotMap(['a', 'b', 'c', 'd'], 256);
    const plan = planRebalance({ slotMap, nodes, slotBytes: zeros(256) });
    const slotsOfC = slotMap.owners.flatMap((owner, slot) => (owner === 'c' ? [slot] : []));
    expect(plan.slotsMoved).toBe(64);
    expect(plan.moves.map((move) => move.slot).sort((x, y) => x - y)).toEqual(slotsOfC);
    expect(plan.moves.every((move) => move.from === 'c')).toBe(true);
    expect(plan.targetSlotCounts.c).toBe(0);
  });

  it('a node absent from the target set drains one move at a time', () => {
    const plan = planRebalance({
      slotMap: initialSlotMap(['a', 'b', 'c', 'd'], 64),
      nodes: equalNodes(['a', 'b', 'd'], 8),
      slotBytes: zeros(64),
    });
    expect(plan.slotsMoved).toBe(16);
    expect(plan.waves).toBe(16);
  });

  it('splits by weight: weights 1, 1, 2 over 256 slots give 64, 64, 128', () => {
    const plan = planRebalance({
      slotMap: initialSlotMap(['a', 'b', 'c'], 256),
      nodes: [
        { name: 'a', weight: 1, concurrencyMax: 1 },
        { name: 'b', weight: 1, concurrencyMax: 1 },
        { name: 'c', weight: 2, concurrencyMax: 1 },
      ],
      slotBytes: zeros(256),
    });
    expect(plan.targetSlotCounts).toEqual({ a: 64, b: 64, c: 128 });
    expect(plan.slotsMoved).toBe(128 - 85);
  });

  it('treats shares exactly: weights 0.1, 0.2, 0.7 over 10 slots give 1, 2, 7', () => {
    const plan = planRebalance({
      slotMap: initialSlotMap(['x'], 10),
      nodes: [
        { name: 'a', weight: 0.1, concurrencyMax: 1 },
        { name: 'b', weight: 0.2, concurrencyMax: 1 },
        { name: 'c', weight: 0.7, concurrencyMax: 1 },
      ],
      slotBytes: zeros(10),
    });
    expect(plan.targetSlotCounts).toEqual({ a: 1, b: 2, c: 7, x: 0 });
  });

  it('a balanced map is left alone', () => {
    const plan = planRebalance({ slotMap: initialSlotMap(['a', 'b'], 16), nodes: equalNodes(['a', 'b']), slotBytes: zeros(16) });
    expect(plan).toMatchObject({ moves: [], slotsMoved: 0, bytesMoved: 0, waves: 0 });
  });

  it('a node gives its smallest slots, ties by slot number', () => {
    // a owns all 8 slots; sizes make slots 5, 3, 6, 7 the smallest (3 and 6 tie at 10 bytes).
    const slotBytes = [90, 80, 70, 10, 60, 5, 10, 20];
    const plan = planRebalance({ slotMap: initialSlotMap(['a'], 8), nodes: equalNodes(['a', 'b']), slotBytes });
    expect(plan.moves.map((move) => move.slot).sort((x, y) => x - y)).toEqual([3, 5, 6, 7]);
    expect(plan.bytesMoved).toBe(45);
    expect(plan.bytesTotal).toBe(345);
  });

  it('spreads large slots so receivers end with similar bytes', () => {
    const slotBytes = [100, 10, 100, 10, 100, 10];
    const slotMap: SlotMap = { modulus: 6, epoch: 3, owners: new Array<string>(6).fill('z') };
    const plan = planRebalance({ slotMap, nodes: equalNodes(['b', 'c', 'd']), slotBytes });
    const bytesTo = (node: string): number => plan.moves.filter((m) => m.to === node).reduce((t, m) => t + m.bytes, 0);
    expect([bytesTo('b'), bytesTo('c'), bytesTo('d')]).toEqual([110, 110, 110]);
  });

  it('does not depend on the order nodes are listed in', () => {
    const slotMap = initialSlotMap(['a', 'b', 'c'], 128);
    const slotBytes = Array.from({ length: 128 }, (_, slot) => (slot * 7919) % 1000);
    const nodes = [
      { name: 'd', weight: 2, concurrencyMax: 3 },
      { name: 'a', weight: 1, concurrencyMax: 1 },
      { name: 'c', weight: 1, concurrencyMax: 2 },
    ];
    const plan = planRebalance({ slotMap, nodes, slotBytes });
    expect(planRebalance({ slotMap, nodes: [...nodes].reverse(), slotBytes })).toEqual(plan);
    expect(planRebalance({ slotMap, nodes, slotBytes })).toEqual(plan);
  });
});

describe('planRebalance: capacity', () => {
  const slotMap = initialSlotMap(['a', 'b', 'c'], 12);
  const slotBytes = new Array<number>(12).fill(1000);

  it('fits the plan within the capacity of each node', () => {
    const plan = planRebalance({
      slotMap,
      nodes: [...equalNodes(['a', 'b', 'c']), { name: 'd', weight: 1, concurrencyMax: 1, capacityBytes: 3000 }],
      slotBytes,
    });
    expect(plan.slotsMoved).toBe(3);
  });

  it('names the node and the missing bytes when a new node is too small', () => {
    expectError(
      {
        slotMap,
        nodes: [...equalNodes(['a', 'b', 'c']), { name: 'd', weight: 1, concurrencyMax: 1, capacityBytes: 2500 }],
        slotBytes,
      },
      'precondition',
      /node "d" would hold at least 3\.0 kB .* capacity is 2\.5 kB: at least 500 bytes \(500 B\) missing/,
    );
  });

  it('names a node that keeps more than its capacity', () => {
    expectError(
      { slotMap, nodes: [{ name: 'a', weight: 1, concurrencyMax: 1, capacityBytes: 3999 }, ...equalNodes(['b', 'c'])], slotBytes },
      'precondition',
      /node "a" would hold 4\.0 kB .* 1 bytes \(1 B\) missing/,
    );
  });

  it('puts a large slot where it fits, even if the first choice would not', () => {
    // z drains slots of 50 and 10 bytes; b has room for 20 more, c for 60.
    const plan = planRebalance({
      slotMap: { modulus: 4, epoch: 1, owners: ['b', 'c', 'z', 'z'] },
      nodes: [
        { name: 'b', weight: 1, concurrencyMax: 1, capacityBytes: 20 },
        { name: 'c', weight: 1, concurrencyMax: 1, capacityBytes: 60 },
      ],
      slotBytes: [0, 0, 50, 10],
    });
    expect(plan.moves.map(({ slot, to }) => ({ slot, to })).sort((x, y) => x.slot - y.slot)).toEqual([
      { slot: 2, to: 'c' },
      { slot: 3, to: 'b' },
    ]);
  });

  it('searches past the greedy choice when only a tight placement fits', () => {
    // All 8 slots move; b (room 12) must take 0+1+2+9 bytes and f (room 45) exactly 17+13+8+7.
    const plan = planRebalance({
      slotMap: { modulus: 8, epoch: 1, owners: ['c', 'd', 'd', 'd', 'a', 'a', 'a', 'a'] },
      nodes: [
        { name: 'b', weight: 1, concurrencyMax: 2, capacityBytes: 12 },
        { name: 'f', weight: 1, concurrencyMax: 2, capacityBytes: 45 },
      ],
      slotBytes: [17, 1, 0, 7, 8, 13, 2, 9],
    });
    const slotsTo = (node: string): number[] => plan.moves.filter((m) => m.to === node).map((m) => m.slot).sort((x, y) => x - y);
    expect(slotsTo('b')).toEqual([1, 2, 6, 7]);
    expect(slotsTo('f')).toEqual([0, 3, 4, 5]);
  });

  it('says which slot fits nowhere when the receivers together lack room', () => {
    expectError(
      {
        slotMap: { modulus: 4, epoch: 1, owners: ['b', 'c', 'z', 'z'] },
        nodes: [
          { name: 'b', weight: 1, concurrencyMax: 1, capacityBytes: 45 },
          { name: 'c', weight: 1, concurrencyMax: 1, capacityBytes: 45 },
        ],
        slotBytes: [0, 0, 50, 10],
      },
      'precondition',
      /slot 2 \(50 B\) fits on no node still receiving slots: node "b" comes closest, 5 bytes \(5 B\) missing/,
    );
  });
});

describe('planRebalance: bad input gets one clear line', () => {
  const slotMap = initialSlotMap(['a', 'b'], 8);
  const good: PlanInput = { slotMap, nodes: equalNodes(['a', 'b']), slotBytes: zeros(8) };
  it.each<[string, PlanInput, RegExp]>([
    ['a zero modulus', { ...good, slotMap: { modulus: 0, epoch: 1, owners: [] }, slotBytes: [] }, /modulus 0 is not a positive integer/],
    ['a fractional modulus', { ...good, slotMap: { ...slotMap, modulus: 7.5 } }, /modulus 7.5 is not a positive integer/],
    ['owners not matching the modulus', { ...good, slotMap: { ...slotMap, owners: ['a'] } }, /1 owners for 8 slots/],
    ['an empty target set', { ...good, nodes: [] }, /target node set is empty/],
    ['a negative weight', { ...good, nodes: [{ name: 'a', weight: -1, concurrencyMax: 1 }] }, /"a" has weight -1/],
    ['a NaN weight', { ...good, nodes: [{ name: 'a', weight: NaN, concurrencyMax: 1 }] }, /"a" has weight NaN/],
    ['an infinite weight', { ...good, nodes: [{ name: 'a', weight: Infinity, concurrencyMax: 1 }] }, /"a" has weight Infinity/],
    ['only zero weights', { ...good, nodes: [{ name: 'a', weight: 0, concurrencyMax: 1 }] }, /no target node has a positive weight/],
    ['a duplicate node', { ...good, nodes: [...equalNodes(['a', 'b']), ...equalNodes(['a'])] }, /"a" is listed twice/],
    ['a zero concurrency', { ...good, nodes: [{ name: 'a', weight: 1, concurrencyMax: 0 }] }, /"a" has concurrencyMax 0/],
    ['a negative capacity', { ...good, nodes: [{ name: 'a', weight: 1, concurrencyMax: 1, capacityBytes: -5 }] }, /"a" has capacityBytes -5/],
    ['too few slot sizes', { ...good, slotBytes: zeros(7) }, /slotBytes has 7 entries for 8 slots/],
    ['a negative slot size', { ...good, slotBytes: [0, 0, -1, 0, 0, 0, 0, 0] }, /slot 2 has size -1 bytes/],
  ])('rejects %s', (_, input, message) => expectError(input, 'bad_input', message));
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [999, '999 B'],
    [1000, '1.0 kB'],
    [2_100_000, '2.1 MB'],
    [21_340_000, '21.3 MB'],
    [213_400_000_000, '213 GB'],
    [999_960, '1.0 MB'],
    [-1500, '-1.5 kB'],
  ])('%d bytes → %s', (bytes, text) => expect(formatBytes(bytes)).toBe(text));
});
