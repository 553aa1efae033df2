import { ReshardError } from '../core/errors.js';
import { slotRowSums, slotsRowSums, type TrackedLeafStats } from '../node/slotRowSums.js';
import { slotStatsOnBoth, type LeafStats } from '../node/slotStats.js';
import type { SlotTable } from '../node/slotPartitions.js';
import type { SlotMoveBase } from './moveStep.js';

/**
 * The verification of every kind of move: per table, the slot's row count and
 * order-independent checksum on the source and the target (one round trip
 * each, in parallel; how rows are hashed is decided in `node/slotStats.ts`).
 * Any difference fails the move before its switch. Returns the rows per table.
 */
export async function verifySlotCopy(context: SlotMoveBase, slot: number, after: string): Promise<{ rowsByTable: Map<string, number>; rows: number }> {
  const { onSource, onTarget } = await slotStatsOnBoth(context.source, context.target, context.tables, slot, context.modulus);
  return compared(context, slot, after, context.tables, onSource, onTarget);
}

/**
 * The same proof from the row sums the online mover keeps before its freeze
 * (`node/slotRowSums.ts`): both sides' sums read at once, one tiny read each;
 * a table whose sums are not complete on either side is scanned on both, as
 * `verifySlotCopy` does. Exact either way: every row of the slot is counted
 * and checksummed on both sides. Also returns how many tables were proven by
 * their sums and how many by a scan.
 */
export async function verifySlotCopyFromSums(context: SlotMoveBase, slot: number, after: string): Promise<{ rowsByTable: Map<string, number>; rows: number; bySums: number; byScan: number }> {
  const [sourceSums, targetSums] = await Promise.all([
    slotRowSums(context.source, context.tables, slot, context.modulus), slotRowSums(context.target, context.tables, slot, context.modulus)]);
  return verifiedFromSums(context, slot, after, sourceSums, targetSums);
}

/**
 * `verifySlotCopyFromSums` for several slots cut over together: every slot's
 * sums read in one round trip a side (both sides at once); a slot with a
 * table not tracked is scanned as there. Per slot, in the order given.
 */
export async function verifySlotsCopyFromSums(context: SlotMoveBase, slots: readonly number[], after: string): Promise<{ slot: number; rows: number; bySums: number; byScan: number }[]> {
  const [sourceSums, targetSums] = await Promise.all([
    slotsRowSums(context.source, context.tables, slots, context.modulus), slotsRowSums(context.target, context.tables, slots, context.modulus)]);
  const verified = [];
  for (const [index, slot] of slots.entries()) {
    const { rows, bySums, byScan } = await verifiedFromSums(context, slot, after, sourceSums[index]!, targetSums[index]!);
    verified.push({ slot, rows, bySums, byScan });
  }
  return verified;
}

async function verifiedFromSums(context: SlotMoveBase, slot: number, after: string, sourceSums: readonly TrackedLeafStats[], targetSums: readonly TrackedLeafStats[]): Promise<{ rowsByTable: Map<string, number>; rows: number; bySums: number; byScan: number }> {
  const scanned = context.tables.filter((_, index) => !sourceSums[index]!.tracked || !targetSums[index]!.tracked);
  const scans = scanned.length > 0 ? await slotStatsOnBoth(context.source, context.target, scanned, slot, context.modulus) : { onSource: [], onTarget: [] };
  const side = (sums: readonly LeafStats[], scan: readonly LeafStats[]): LeafStats[] =>
    context.tables.map((table, index) => (scanned.includes(table) ? scan[scanned.indexOf(table)]! : sums[index]!));
  const verified = compared(context, slot, after, context.tables, side(sourceSums, scans.onSource), side(targetSums, scans.onTarget));
  return { ...verified, bySums: context.tables.length - scanned.length, byScan: scanned.length };
}

function compared(context: SlotMoveBase, slot: number, after: string, tables: readonly SlotTable[], onSource: readonly LeafStats[], onTarget: readonly LeafStats[]): { rowsByTable: Map<string, number>; rows: number } {
  const rowsByTable = new Map<string, number>();
  for (const [index, table] of tables.entries()) {
    const source = onSource[index]!;
    const target = onTarget[index]!;
    if (source.rows !== target.rows || source.checksum !== target.checksum) {
      throw new ReshardError(
        'verification_failed',
        `slot ${slot} of ${table.name} differs after ${after}: ${context.sourceName} has ${source.rows} rows, ${context.targetName} has ${target.rows} (checksums ${source.checksum === target.checksum ? 'equal' : 'differ'})`,
        'the move was rolled back; run `reshard rebalance` again and report this if it repeats',
      );
    }
    rowsByTable.set(table.name, target.rows);
  }
  return { rowsByTable, rows: [...rowsByTable.values()].reduce((sum, rows) => sum + rows, 0) };
}
