import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { initialSlotMap, slotCountsByNode, splitSlotMap, type SlotMap } from '../../src/core/slotMap.js';
import {
  compareStrategies,
  formatComparison,
  formatMovementMatrix,
  moduloMovedFraction,
  planRebalance,
  rangeMovedFraction,
  type PlanInput,
  type PlannerNode,
} from '../../src/planner/index.js';

const equalNodes = (names: readonly string[]): PlannerNode[] => names.map((name) => ({ name, weight: 1, concurrencyMax: 2 }));
const zeros = (modulus: number): number[] => new Array<number>(modulus).fill(0);
const threeToFour: PlanInput = {
  slotMap: initialSlotMap(['a', 'b', 'c'], 256),
  nodes: equalNodes(['a', 'b', 'c', 'd']),
  slotBytes: zeros(256),
};

describe('compareStrategies', () => {
  it('3 → 4 nodes: range moves 50 %, modulo 75 %, slots 25 %, the ideal', () => {
    const c = compareStrategies(threeToFour);
    expect(c.nodes_before).toEqual(['a', 'b', 'c']);
    expect(c.nodes_after).toEqual(['a', 'b', 'c', 'd']);
    expect(c.modulus).toBe(256);
    expect(c.strategies.range.moved_fraction).toBeCloseTo(0.5, 12);
    expect(c.strategies.modulo.moved_fraction).toBeCloseTo(0.75, 12);
    expect(c.strategies.slots.moved_fraction).toBe(0.25);
    expect(c.strategies.slots.slots_moved).toBe(64);
    expect(c.strategies.slots.ideal_fraction).toBeCloseTo(0.25, 12);
  });

  it('counts the slots of a split map, not the modulus, in what it prints', () => {
    let slotMap: SlotMap = initialSlotMap(['a', 'b', 'c'], 8);
    for (const slot of [0, 1, 2]) slotMap = splitSlotMap(slotMap, slot);
    const c = compareStrategies({ slotMap, nodes: equalNodes(['a', 'b', 'c', 'd']), slotBytes: zeros(slotMap.owners.length) });
    expect(c.modulus).toBe(8);
    expect(c.slot_count).toBe(11);
    const printed = formatComparison(c);
    expect(printed).toMatch(/3 → 4 nodes, 11 slots/);
    expect(printed).toMatch(new RegExp(`\\(${c.strategies.slots.slots_moved} of 11 slots move\\)`));
  });

  it('counts bytes when slot sizes are known', () => {
    const slotBytes = new Array<number>(256).fill(1_000_000);
    const c = compareStrategies({ ...threeToFour, slotBytes });
    expect(c.strategies.range.moved_bytes).toBe(128_000_000);
    expect(c.strategies.modulo.moved_bytes).toBe(192_000_000);
    expect(c.strategies.slots.moved_bytes).toBe(64_000_000);
    expect(c.strategies.slots.moved_fraction).toBe(0.25);
  });

  it('adding k equal nodes to n: ideal is k/(n+k)', () => {
    for (const [n, k] of [[1, 1], [3, 2], [4, 4], [5, 3]] as const) {
      const before = Array.from({ length: n }, (_, i) => `old${i}`);
      const after = [...before, ...Array.from({ length: k }, (_, i) => `new${i}`)];
      const modulus = 840; // divisible by every n + k above, so the slot counts can be exact
      const c = compareStrategies({ slotMap: initialSlotMap(before, modulus), nodes: equalNodes(after), slotBytes: zeros(modulus) });
      expect(c.strategies.slots.ideal_fraction).toBeCloseTo(k / (n + k), 12);
      expect(c.strategies.slots.moved_fraction).toBeCloseTo(k / (n + k), 12);
    }
  });

  it('removing the last of 4 nodes: range 50 %, modulo 75 %, slots 25 %', () => {
    const c = compareStrategies({ slotMap: initialSlotMap(['a', 'b', 'c', 'd'], 256), nodes: equalNodes(['a', 'b', 'c']), slotBytes: zeros(256) });
    expect(c.nodes_after).toEqual(['a', 'b', 'c']);
    expect(c.strategies.range.moved_fraction).toBeCloseTo(0.5, 12);
    expect(c.strategies.modulo.moved_fraction).toBeCloseTo(0.75, 12);
    expect(c.strategies.slots.moved_fraction).toBe(0.25);
  });

  it('removing a middle node shifts the ranges of the nodes after it', () => {
    // a keeps [0, 1/4); c: [1/2, 3/4) → [1/3, 2/3) keeps 1/6; d: [3/4, 1) → [2/3, 1) keeps 1/4.
    const c = compareStrategies({ slotMap: initialSlotMap(['a', 'b', 'c', 'd'], 256), nodes: equalNodes(['a', 'c', 'd']), slotBytes: zeros(256) });
    expect(c.nodes_after).toEqual(['a', 'c', 'd']);
    expect(c.strategies.range.moved_fraction).toBeCloseTo(1 / 3, 12);
    expect(c.strategies.modulo.moved_fraction).toBeCloseTo(0.75, 12);
  });

  it('appends new nodes after the survivors, whatever their names', () => {
    const c = compareStrategies({ slotMap: initialSlotMap(['m', 'n'], 64), nodes: equalNodes(['z', 'a', 'n', 'm']), slotBytes: zeros(64) });
    expect(c.nodes_after).toEqual(['m', 'n', 'a', 'z']);
  });

  it('range and modulo fractions match counting keys over one period', () => {
    const listsArb = fc
      .tuple(fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { minLength: 1 }), fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { minLength: 1 }))
      .map(([before, after]) => [before.map((i) => `n${i}`), after.map((i) => `n${i}`)] as const);
    fc.assert(
      fc.property(listsArb, ([before, after]) => {
        const n = before.length;
        const m = after.length;
        // Range: sample the middle of each of the n·m equal cells of the hash space.
        let rangeMoved = 0;
        for (let cell = 0; cell < n * m; cell++) {
          const h = (cell + 0.5) / (n * m);
          if (before[Math.floor(h * n)] !== after[Math.floor(h * m)]) rangeMoved++;
        }
        expect(rangeMovedFraction(before, after)).toBeCloseTo(rangeMoved / (n * m), 12);
        // Modulo: n·m is a multiple of the period, so counting over it gives the same fraction.
        let moduloMoved = 0;
        for (let h = 0; h < n * m; h++) if (before[h % n] !== after[h % m]) moduloMoved++;
        expect(moduloMovedFraction(before, after)).toBeCloseTo(moduloMoved / (n * m), 12);
      }),
      { numRuns: 300 },
    );
  });

  it('slots move the ideal to within one slot per node (equal sizes; whole slots round either way)', () => {
    const arb = fc.record({
      modulus: fc.integer({ min: 1, max: 1024 }),
      before: fc.integer({ min: 1, max: 8 }),
      kept: fc.integer({ min: 0, max: 8 }),
      added: fc.integer({ min: 0, max: 4 }),
      bytesKnown: fc.boolean(),
    });
    fc.assert(
      fc.property(arb, ({ modulus, before, kept, added, bytesKnown }) => {
        const beforeNames = Array.from({ length: before }, (_, i) => `old${i}`);
        const afterNames = [...beforeNames.slice(0, kept), ...Array.from({ length: added }, (_, i) => `new${i}`)];
        if (afterNames.length === 0) afterNames.push('only');
        const input: PlanInput = {
          slotMap: initialSlotMap(beforeNames, modulus),
          nodes: equalNodes(afterNames),
          slotBytes: new Array<number>(modulus).fill(bytesKnown ? 777 : 0),
        };
        const { slots } = compareStrategies(input).strategies;
        expect(slots.moved_fraction).toBeCloseTo(slots.slots_moved / modulus, 12);
        // Each node's target is within one slot of its exact share, so its excess is too.
        const nodeCount = new Set([...beforeNames, ...afterNames]).size;
        expect(Math.abs(slots.moved_fraction - slots.ideal_fraction)).toBeLessThan(nodeCount / modulus + 1e-12);
        if (modulus % afterNames.length === 0 && modulus % before === 0) {
          expect(slots.moved_fraction).toBeCloseTo(slots.ideal_fraction, 12);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('movement matrix', () => {
  it('rows sum to what each node holds now, columns to what it holds after', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 3 }),
        (modulus, before, kept, added) => {
          const beforeNames = Array.from({ length: before }, (_, i) => `old${i}`);
          const afterNames = [...beforeNames.slice(0, kept), ...Array.from({ length: added }, (_, i) => `new${i}`)];
          if (afterNames.length === 0) afterNames.push('only');
          const slotBytes = Array.from({ length: modulus }, (_, slot) => (slot * 2654435761) % 10_000);
          const input: PlanInput = { slotMap: initialSlotMap(beforeNames, modulus), nodes: equalNodes(afterNames), slotBytes };
          const plan = planRebalance(input);
          const { matrix } = compareStrategies(input);
          const current = slotCountsByNode(input.slotMap);
          matrix.nodes.forEach((name, i) => {
            const row = matrix.cells[i]!;
            expect(row.reduce((t, cell) => t + cell.slots, 0)).toBe(current.get(name) ?? 0);
            expect(matrix.cells.reduce((t, r) => t + r[i]!.slots, 0)).toBe(plan.targetSlotCounts[name] ?? 0);
          });
          const offDiagonal = matrix.cells.flatMap((row, i) => row.filter((_, j) => i !== j));
          expect(offDiagonal.reduce((t, cell) => t + cell.slots, 0)).toBe(plan.slotsMoved);
          expect(offDiagonal.reduce((t, cell) => t + cell.bytes, 0)).toBe(plan.bytesMoved);
          expect(matrix.cells.flat().reduce((t, cell) => t + cell.bytes, 0)).toBe(plan.bytesTotal);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('prints an aligned table with keep on the diagonal and send elsewhere', () => {
    const slotBytes = new Array<number>(256).fill(33_000);
    const text = formatMovementMatrix(compareStrategies({ ...threeToFour, slotBytes }).matrix);
    expect(text).toBe(
      [
        'from \\ to  a                 b                 c                 d',
        'a          keep 64 / 2.1 MB  -                 -                 send 22 / 726 kB',
        'b          -                 keep 64 / 2.1 MB  -                 send 21 / 693 kB',
        'c          -                 -                 keep 64 / 2.1 MB  send 21 / 693 kB',
        'd          -                 -                 -                 -',
      ].join('\n'),
    );
  });

  it('leaves bytes out when no slot size is known', () => {
    const text = formatMovementMatrix(compareStrategies(threeToFour).matrix);
    expect(text.split('\n')[1]).toBe('a          keep 64  -        -        send 22');
  });
});

describe('formatComparison', () => {
  it('prints the strategies side by side, then the matrix', () => {
    const text = formatComparison(compareStrategies(threeToFour));
    const lines = text.split('\n');
    expect(lines[0]).toBe('3 → 4 nodes, 256 slots');
    expect(lines.find((line) => line.startsWith('range'))).toMatch(/^range\s+50\.0 %\s+-\s+contiguous hash ranges/);
    expect(lines.find((line) => line.startsWith('modulo'))).toMatch(/^modulo\s+75\.0 %\s+-\s+hash mod N/);
    expect(lines.find((line) => line.startsWith('slots'))).toMatch(/^slots\s+25\.0 %\s+-\s+.*\(64 of 256 slots move\)/);
    expect(lines.find((line) => line.startsWith('ideal'))).toMatch(/^ideal\s+25\.0 %/);
    expect(text).toContain('from \\ to');
    // The strategy table's columns line up.
    const header = lines.find((line) => line.startsWith('strategy'))!;
    const rangeLine = lines.find((line) => line.startsWith('range'))!;
    expect(rangeLine.indexOf('50.0')).toBe(header.indexOf('moves'));
  });
});
