import { assert } from '../core/assert.js';
import { assertIdentifierFits } from '../core/identifier.js';

/**
 * The partition of `table` that holds `slot`: `users_s0017`. Zero-padded so
 * leaves sort by slot in `\d+`.
 */
export function leafName(table: string, slot: number, modulus: number): string {
  assert(Number.isInteger(slot) && slot >= 0 && slot < modulus, `slot ${slot} is within modulus ${modulus}`);
  const digits = Math.max(4, String(modulus - 1).length);
  const name = `${table}_s${String(slot).padStart(digits, '0')}`;
  assertIdentifierFits(name, 'partition name');
  return name;
}
