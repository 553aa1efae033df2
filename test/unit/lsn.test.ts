import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lsnText, lsnValue } from '../../src/core/lsn.js';

describe('WAL positions', () => {
  it('reads and writes PostgreSQL\'s X/Y form', () => {
    expect(lsnValue('0/1DA14FF0')).toBe(0x1da14ff0n);
    expect(lsnValue('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(lsnText(0x1da14ff0n)).toBe('0/1DA14FF0');
    expect(lsnText((0xffffffffn << 32n) | 0xffffffffn)).toBe('FFFFFFFF/FFFFFFFF');
    expect(() => lsnValue('0x1DA14FF0')).toThrow(/not a WAL position/);
    expect(() => lsnText(-1n)).toThrow(/not a WAL position/);
  });

  it('keeps the order of positions and survives a round trip through text', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (a, b) => {
      expect(lsnValue(lsnText(a))).toBe(a);
      // pg_lsn compares as the number; so must the values read back.
      expect(lsnValue(lsnText(a)) < lsnValue(lsnText(b))).toBe(a < b);
    }));
  });
});
