import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { ReshardError } from '../core/errors.js';
import { quoteQualified } from '../core/identifier.js';
import { abandonConnection, lostConnectionError, queryTimeoutMs } from '../plumbing/connectTo.js';
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
  return copyRelation(source, target, quoteQualified(table.schema, leafName(table.name, slot, modulus)), onBytes, gate);
}

/**
 * COPY `qualified` (a quoted relation name, the same on both sides) from the
 * source session into the target session, metered and paced by `gate`.
 * Bounded at both ends: the meter fails a copy that receives nothing for the
 * idle limit, and once every byte is sent the target must confirm the COPY
 * within that limit too, or its connection is abandoned (a stalled target
 * would otherwise hold the copy forever after its last byte).
 */
export async function copyRelation(
  source: pg.ClientBase,
  target: pg.ClientBase,
  qualified: string,
  onBytes: (bytesCopied: number) => void,
  gate?: CopyGate,
  idleMs = queryTimeoutMs(),
): Promise<CopyResult> {
  return copyStatements(source, target, `COPY ${qualified} TO STDOUT (FORMAT binary)`, `COPY ${qualified} FROM STDIN (FORMAT binary)`, qualified, onBytes, gate, idleMs);
}

/** The same as `copyRelation` for any pair of COPY statements (a query's rows into another relation). */
export async function copyStatements(
  source: pg.ClientBase,
  target: pg.ClientBase,
  copyOutSql: string,
  copyInSql: string,
  qualified: string,
  onBytes: (bytesCopied: number) => void,
  gate?: CopyGate,
  idleMs = queryTimeoutMs(),
): Promise<CopyResult> {
  const reader = source.query(copyTo(copyOutSql));
  const writer = target.query(copyFrom(copyInSql));
  let bytes = 0;
  const counter = meteredCopyStream((soFar) => {
    bytes = soFar;
    onBytes(soFar);
  }, gate, `the copy of ${qualified}`, idleMs);
  let confirmTimer: NodeJS.Timeout | undefined;
  const unconfirmed = new Promise<never>((_, reject) => {
    counter.once('finish', () => {
      confirmTimer = setTimeout(() => {
        abandonConnection(target);
        reject(new ReshardError('timeout', `the target did not confirm the copy of ${qualified} within ${idleMs} ms of its last byte`,
          'check the network between reshard and the target node; the move is rolled back or can be resumed'));
      }, idleMs);
    });
  });
  // Which end failed first, for the error line (node-postgres's own text names neither).
  let failedEnd: string | undefined;
  reader.once('error', () => { failedEnd ??= `the source of the copy of ${qualified}`; });
  writer.once('error', () => { failedEnd ??= `the target of the copy of ${qualified}`; });
  try {
    await Promise.race([pipeline(reader, counter, writer), unconfirmed]);
  } catch (error) {
    throw lostConnectionError(failedEnd ?? `the copy of ${qualified}`, error);
  } finally {
    clearTimeout(confirmTimer);
  }
  return { bytes, rows: writer.rowCount };
}
