import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { quoteQualified } from '../core/identifier.js';
import { meteredCopyStream, type CopyGate } from './copyMeter.js';
import { leafName } from './leafName.js';
import type { SlotTable } from './slotPartitions.js';

export interface CopyResult {
  bytes: number;
  rows: number;
}

/**
 * Streams one leaf from source to target with COPY in binary format: no
 * staging file, no row parsing in Node. `onBytes` sees the running total.
 */
export async function copySlotLeaf(
  source: pg.ClientBase,
  target: pg.ClientBase,
  table: SlotTable,
  slot: number,
  modulus: number,
  onBytes: (bytesCopied: number) => void,
  gate?: CopyGate,
): Promise<CopyResult> {
  const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  const reader = source.query(copyTo(`COPY ${leaf} TO STDOUT (FORMAT binary)`));
  const writer = target.query(copyFrom(`COPY ${leaf} FROM STDIN (FORMAT binary)`));
  let bytes = 0;
  const counter = meteredCopyStream((soFar) => {
    bytes = soFar;
    onBytes(soFar);
  }, gate, `the copy of ${leaf}`);
  await pipeline(reader, counter, writer);
  return { bytes, rows: writer.rowCount };
}
