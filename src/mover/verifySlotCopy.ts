import { ReshardError } from '../core/errors.js';
import { slotStatsOnBoth } from '../node/slotStats.js';
import type { SlotMoveBase } from './moveStep.js';

/**
 * The verification of every kind of move: per table, the slot's row count and
 * order-independent checksum on the source and the target (one round trip
 * each, in parallel; how rows are hashed is decided in `node/slotStats.ts`).
 * Any difference fails the move before its switch. Returns the rows per table.
 */
export async function verifySlotCopy(context: SlotMoveBase, slot: number, after: string): Promise<{ rowsByTable: Map<string, number>; rows: number }> {
  const { onSource, onTarget } = await slotStatsOnBoth(context.source, context.target, context.tables, slot, context.modulus);
  const rowsByTable = new Map<string, number>();
  for (const [index, table] of context.tables.entries()) {
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
