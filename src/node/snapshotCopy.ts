import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import { DURABLE_COMMIT_OPTIONS, openClient } from '../plumbing/connectTo.js';
import type { CopyGate } from './copyMeter.js';
import { copyRelation } from './copySlot.js';
import { buildLeafIndexesLikeParent, dropStagedLeafIndexes } from './leafIndexes.js';

/**
 * A logical replication slot created on a replication connection, with its
 * snapshot exported: COPY under that snapshot plus the slot's changes after
 * its consistent point is exactly the source's data, with no gap and no
 * overlap. The snapshot lives while this connection stays open and idle.
 */
export interface ExportedSlot {
  slotName: string;
  snapshotName: string;
  consistentPoint: string;
  release(): Promise<void>;
}

/** `plugin`: pgoutput for a subscription; test_decoding for a stream reshard reads itself (an adoption). */
export async function createSlotWithExportedSnapshot(source: ConnectionSettings, slotName: string, plugin: 'pgoutput' | 'test_decoding' = 'pgoutput'): Promise<ExportedSlot> {
  const client = await openClient(source, 'reshard snapshot', { replication: 'database' } as Partial<pg.ClientConfig>, 'the source (replication slot)');
  try {
    const result = await client.query<{ slot_name: string; consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slotName)} LOGICAL ${plugin} (SNAPSHOT 'export')`,
    );
    const row = result.rows[0]!;
    return {
      slotName: row.slot_name,
      snapshotName: row.snapshot_name,
      consistentPoint: row.consistent_point,
      release: () => client.end().catch(() => {}),
    };
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
}

export interface LeafRef {
  schema: string;
  name: string;
  /**
   * The parent (quoted, qualified) whose indexes the leaf gets once its rows
   * are in: the copy then loads an index-free leaf and builds each index once.
   * Absent: the leaf keeps the indexes it has through the copy.
   */
  indexesOf?: string;
}

/**
 * Copies `leaves` from the source, as of `snapshotName`, into the target's
 * staged (empty) leaves of the same name, over `lanes` parallel connection
 * pairs. `onBytes` sees each leaf's streamed bytes as they go; `gate` paces them.
 * A leaf with `indexesOf` is loaded without indexes, then gets its parent's.
 */
export async function copyLeavesAtSnapshot(
  source: ConnectionSettings,
  target: ConnectionSettings,
  snapshotName: string,
  leaves: readonly LeafRef[],
  lanes: number,
  onBytes: (leaf: LeafRef, bytes: number) => void,
  gate?: CopyGate,
): Promise<{ bytes: number; rows: number }> {
  let next = 0;
  let bytesTotal = 0;
  let rowsTotal = 0;
  const lane = async (): Promise<void> => {
    const { reader, writer } = await openSnapshotCopyPair(source, target, snapshotName, 'reshard copy', { reader: 'the source (copy)', writer: 'the target (copy)' });
    try {
      while (next < leaves.length) {
        const leaf = leaves[next++]!;
        const qualified = quoteQualified(leaf.schema, leaf.name);
        if (leaf.indexesOf !== undefined) await dropStagedLeafIndexes(writer, qualified);
        await writer.query(`TRUNCATE ${qualified}`);
        const copied = await copyRelation(reader, writer, qualified, (bytes) => onBytes(leaf, bytes), gate);
        if (leaf.indexesOf !== undefined) await buildLeafIndexesLikeParent(writer, leaf.indexesOf, qualified);
        bytesTotal += copied.bytes;
        rowsTotal += copied.rows;
      }
      await reader.query('COMMIT');
    } finally {
      await Promise.all([reader.end().catch(() => {}), writer.end().catch(() => {})]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(lanes, leaves.length)) }, lane));
  return { bytes: bytesTotal, rows: rowsTotal };
}

/** A session inside a repeatable-read, read-only transaction at the exported snapshot (closed if the snapshot cannot be taken). */
export async function openSnapshotReader(source: ConnectionSettings, snapshotName: string, application: string, role: string): Promise<pg.Client> {
  const reader = await openClient(source, application, {}, role);
  try {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await reader.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
  } catch (error) {
    await reader.end().catch(() => {});
    throw error;
  }
  return reader;
}

/**
 * One copy lane's two sessions: a reader inside a repeatable-read
 * transaction at the exported snapshot, and a writer that commits durably.
 * Both connect at once; if either side fails (to connect, or to take the
 * snapshot), both are closed (an open one keeps the process alive).
 */
export async function openSnapshotCopyPair(
  source: ConnectionSettings, target: ConnectionSettings, snapshotName: string, application: string, roles: { reader: string; writer: string },
): Promise<{ reader: pg.Client; writer: pg.Client }> {
  const [readerOpened, writerOpened] = await Promise.allSettled([
    openClient(source, application, {}, roles.reader),
    openClient(target, application, { options: DURABLE_COMMIT_OPTIONS }, roles.writer),
  ]);
  if (readerOpened.status === 'rejected' || writerOpened.status === 'rejected') {
    for (const opened of [readerOpened, writerOpened]) if (opened.status === 'fulfilled') await opened.value.end().catch(() => {});
    throw readerOpened.status === 'rejected' ? readerOpened.reason : (writerOpened as PromiseRejectedResult).reason;
  }
  const reader = readerOpened.value;
  const writer = writerOpened.value;
  try {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await reader.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotName)}`);
  } catch (error) {
    await Promise.all([reader.end().catch(() => {}), writer.end().catch(() => {})]);
    throw error;
  }
  return { reader, writer };
}
