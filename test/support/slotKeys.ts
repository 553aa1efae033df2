import { slotOf } from '../../src/core/hash.js';

/** The smallest bigint key whose slot is `slot` of `slots`. */
export function keyOfSlot(slot: number, slots: number): number {
  for (let id = 1; ; id++) if (slotOf('bigint', id, slots) === slot) return id;
}
