import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runBounded } from '../../src/coordinator/runBounded.js';
import { NodeLimiter } from '../../src/coordinator/nodeLimiter.js';
import { runWithNodeLimits } from '../../src/coordinator/runWithNodeLimits.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('runBounded', () => {
  it('never runs more than the limit at once, and runs every item once', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 20 }), fc.integer({ min: 1, max: 5 }), async (delays, limit) => {
      let running = 0;
      let most = 0;
      const ran: number[] = [];
      const results = await runBounded(delays.map((delay, index) => ({ delay, index })), limit, async (item) => {
        running++;
        most = Math.max(most, running);
        for (let i = 0; i < item.delay; i++) await tick();
        running--;
        ran.push(item.index);
        return item.index;
      });
      expect(most).toBeLessThanOrEqual(limit);
      expect(ran.sort((a, b) => a - b)).toEqual(delays.map((_, index) => index));
      expect(results).toHaveLength(delays.length);
    }), { numRuns: 50 });
  });

  it('reports failures as rejected results and starts nothing once told to stop', async () => {
    let stop = false;
    const started: number[] = [];
    const results = await runBounded([1, 2, 3, 4, 5], 1, async (item) => {
      started.push(item);
      if (item === 2) {
        stop = true;
        throw new Error('two failed');
      }
      return item;
    }, () => stop);
    expect(started).toEqual([1, 2]);
    expect(results).toEqual([{ status: 'fulfilled', value: 1 }, { status: 'rejected', reason: new Error('two failed') }]);
  });

  it('a limit below one still runs the items, one at a time', async () => {
    const results = await runBounded([1, 2], 0, async (item) => item * 10);
    expect(results.map((result) => (result.status === 'fulfilled' ? result.value : undefined))).toEqual([10, 20]);
  });
});

describe('runWithNodeLimits', () => {
  const nodes = ['n1', 'n2', 'n3', 'n4'];
  const unitArbitrary = fc.record({ from: fc.constantFrom(...nodes), to: fc.constantFrom(...nodes), delay: fc.integer({ min: 0, max: 3 }) });

  it('never exceeds a node\'s limit or the global limit, and runs every unit once', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(unitArbitrary, { maxLength: 15 }), fc.record({ n1: fc.integer({ min: 0, max: 3 }), n2: fc.integer({ min: 1, max: 3 }), n3: fc.integer({ min: 1, max: 3 }), n4: fc.integer({ min: 1, max: 3 }) }),
      fc.integer({ min: 1, max: 4 }),
      async (units, limits, globalLimit) => {
        const busy = new Map<string, number>();
        let running = 0;
        let globalMost = 0;
        const overLimit: string[] = [];
        const nodesOf = (unit: (typeof units)[number]): string[] => [...new Set([unit.from, unit.to])];
        const limitOf = (node: string): number => limits[node as keyof typeof limits];
        const results = await runWithNodeLimits(units, nodesOf, limitOf, globalLimit, async (unit) => {
          running++;
          globalMost = Math.max(globalMost, running);
          for (const node of nodesOf(unit)) {
            busy.set(node, (busy.get(node) ?? 0) + 1);
            // A limit below one still lets one unit through (else the node could never be used).
            if (busy.get(node)! > Math.max(1, limitOf(node))) overLimit.push(node);
          }
          for (let i = 0; i < unit.delay; i++) await tick();
          for (const node of nodesOf(unit)) busy.set(node, busy.get(node)! - 1);
          running--;
          return unit;
        });
        expect(overLimit).toEqual([]);
        expect(globalMost).toBeLessThanOrEqual(globalLimit);
        expect(results).toHaveLength(units.length);
        expect(results.every((result) => result.status === 'fulfilled')).toBe(true);
      },
    ), { numRuns: 50 });
  });

  it('starts a later unit whose nodes are free before an earlier one whose node is busy', async () => {
    const order: string[] = [];
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => { releaseFirst = resolve; });
    const units = [{ name: 'a', nodes: ['n1'] }, { name: 'b', nodes: ['n1'] }, { name: 'c', nodes: ['n2'] }];
    const done = runWithNodeLimits(units, (unit) => unit.nodes, () => 1, 3, async (unit) => {
      order.push(`start ${unit.name}`);
      if (unit.name === 'a') await firstHeld;
      order.push(`end ${unit.name}`);
    });
    await tick();
    expect(order).toEqual(['start a', 'start c', 'end c']);
    releaseFirst();
    await done;
    expect(order).toEqual(['start a', 'start c', 'end c', 'end a', 'start b', 'end b']);
  });

  it('starts nothing new once told to stop, and returns the outcome of what it started', async () => {
    let stop = false;
    const results = await runWithNodeLimits([1, 2, 3], () => ['n1'], () => 1, 1, async (unit) => {
      if (unit === 1) {
        stop = true;
        throw new Error('first failed');
      }
      return unit;
    }, () => stop);
    expect(results).toEqual([{ status: 'rejected', reason: new Error('first failed') }]);
  });
});

describe('NodeLimiter', () => {
  const nodes = ['n1', 'n2', 'n3'];

  it('never exceeds a node\'s limit or the global limit, and runs every unit once, whenever units arrive', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ nodes: fc.subarray(nodes, { minLength: 1 }), arriveAfter: fc.integer({ min: 0, max: 3 }), delay: fc.integer({ min: 0, max: 3 }) }), { maxLength: 15 }),
      fc.record({ n1: fc.integer({ min: 0, max: 2 }), n2: fc.integer({ min: 1, max: 2 }), n3: fc.integer({ min: 1, max: 3 }) }),
      fc.integer({ min: 1, max: 3 }),
      async (units, limits, globalLimit) => {
        const limiter = new NodeLimiter((node) => limits[node as keyof typeof limits], globalLimit);
        const busy = new Map<string, number>();
        let running = 0;
        let globalMost = 0;
        let overNode = false;
        const ran: number[] = [];
        await Promise.all(units.map(async (unit, index) => {
          for (let i = 0; i < unit.arriveAfter; i++) await tick();
          await limiter.run(unit.nodes, async () => {
            running++;
            globalMost = Math.max(globalMost, running);
            for (const node of unit.nodes) {
              busy.set(node, (busy.get(node) ?? 0) + 1);
              if (busy.get(node)! > Math.max(1, limits[node as keyof typeof limits])) overNode = true;
            }
            for (let i = 0; i < unit.delay; i++) await tick();
            for (const node of unit.nodes) busy.set(node, busy.get(node)! - 1);
            running--;
            ran.push(index);
          });
        }));
        expect(globalMost).toBeLessThanOrEqual(globalLimit);
        expect(overNode).toBe(false);
        expect(ran.sort((a, b) => a - b)).toEqual(units.map((_, index) => index));
      }), { numRuns: 60 });
  });

  it('lets a unit whose nodes are free pass one that waits for a busy node, and frees the node when work fails', async () => {
    const limiter = new NodeLimiter(() => 1, 2);
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = limiter.run(['n1'], () => new Promise<void>((resolve) => { releaseFirst = resolve; }).then(() => { order.push('first'); }));
    const second = limiter.run(['n1'], async () => { order.push('second'); });
    const third = limiter.run(['n2'], async () => { order.push('third'); });
    await third;
    expect(order).toEqual(['third']);
    releaseFirst();
    await Promise.all([first, second]);
    expect(order).toEqual(['third', 'first', 'second']);
    await expect(limiter.run(['n1'], async () => { throw new Error('failed'); })).rejects.toThrow('failed');
    expect(await limiter.run(['n1'], async () => 'after')).toBe('after');
  });
});
