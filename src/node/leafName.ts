import { assert } from '../core/assert.js';
import { assertIdentifierFits } from '../core/identifier.js';

/**
 * The partition of `table` that holds `slot`: `users_s0017`. Zero-padded (to
 * the digits of the cluster's `modulus`) so leaves sort by slot in `\d+`. A
 * split adds slot ids at or above the cluster's modulus (r + M): their names
 * may be longer, never ambiguous, and a slot keeps its name through splits.
 */
export function leafName(table: string, slot: number, modulus: number): string {
  assert(Number.isSafeInteger(slot) && slot >= 0 && Number.isSafeInteger(modulus) && modulus > 0, `slot ${slot} is a slot id of a cluster of modulus ${modulus}`);
  const digits = Math.max(4, String(modulus - 1).length);
  const name = `${table}_s${String(slot).padStart(digits, '0')}`;
  assertIdentifierFits(name, 'partition name');
  return name;
}

/**
 * A POSIX regular expression (for `~` in SQL) matching every name `leafName`
 * can give `table`'s leaves. It over-matches other paddings on purpose:
 * `slotOfLeafName` decides.
 */
export function leafNamePattern(table: string): string {
  return `^${table.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_s[0-9]+$`;
}

/** The slot of a name shaped like some table's leaf (`orders_s0017` → 17), for names read back from publications. */
export function slotOfAnyLeafName(relname: string): number | undefined {
  const match = /_s(\d+)$/.exec(relname);
  return match ? Number(match[1]) : undefined;
}

/** The slot whose leaf of `table` is named `relname`, or undefined if reshard would not name a leaf so. */
export function slotOfLeafName(table: string, relname: string, modulus: number): number | undefined {
  const prefix = `${table}_s`;
  if (!relname.startsWith(prefix)) return undefined;
  const digits = relname.slice(prefix.length);
  if (!/^[0-9]+$/.test(digits)) return undefined;
  const slot = Number(digits);
  if (!Number.isSafeInteger(slot)) return undefined;
  return leafName(table, slot, modulus) === relname ? slot : undefined;
}
