/** "slot 7" or "slots 7, 9, 12": a set of slots as messages and logs name it. */
export function slotsText(slots: readonly number[]): string {
  return `slot${slots.length > 1 ? 's' : ''} ${slots.join(', ')}`;
}
