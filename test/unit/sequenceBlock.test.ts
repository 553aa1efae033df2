import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../src/core/assert.js';
import { SEQUENCE_BLOCK_MAX, SEQUENCE_BLOCK_VALUES, sequenceBlockRange } from '../../src/core/sequenceBlock.js';

const INT8_MAX = 2n ** 63n - 1n;

describe('sequence blocks', () => {
  it('are 2^48 values each, above every value from before reshard, inside bigint', () => {
    expect(sequenceBlockRange(1)).toEqual({ min: 281474976710656n, max: 562949953421311n });
    expect(sequenceBlockRange(SEQUENCE_BLOCK_MAX).max).toBe(INT8_MAX);
    fc.assert(fc.property(fc.integer({ min: 1, max: SEQUENCE_BLOCK_MAX }), (block) => {
      const range = sequenceBlockRange(block);
      expect(range.max - range.min + 1n).toBe(SEQUENCE_BLOCK_VALUES);
      expect(range.min).toBeGreaterThanOrEqual(SEQUENCE_BLOCK_VALUES);
      expect(range.max).toBeLessThanOrEqual(INT8_MAX);
    }));
  });

  it('never overlap', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: SEQUENCE_BLOCK_MAX }), fc.integer({ min: 1, max: SEQUENCE_BLOCK_MAX }), (left, right) => {
      fc.pre(left !== right);
      const a = sequenceBlockRange(left);
      const b = sequenceBlockRange(right);
      expect(a.max < b.min || b.max < a.min).toBe(true);
    }));
  });

  it('block 0 and blocks past bigint are no block', () => {
    for (const block of [0, -1, SEQUENCE_BLOCK_MAX + 1, 1.5]) expect(() => sequenceBlockRange(block)).toThrow(InvariantViolation);
  });
});
