import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';

/**
 * Gives `node` a fresh sequence block (never one any node had before) and
 * returns it; in the caller's transaction. Called when a node is recorded.
 */
export async function assignSequenceBlock(db: Queryable, node: string): Promise<number> {
  try {
    const result = await db.query<{ block: number }>(
      "UPDATE reshard.node SET sequence_block = nextval('reshard.sequence_block_seq') WHERE name = $1 RETURNING sequence_block AS block", [node]);
    const block = result.rows[0]?.block;
    if (block === undefined) throw new ReshardError('not_found', `no node named "${node}"`, 'add it with `reshard node add` first');
    return block;
  } catch (error) {
    if ((error as { code?: string }).code !== '2200H') throw error;
    throw new ReshardError('unsupported', 'every sequence block (32,767 node additions) has been given out', 'keys from sequences cannot be split further; use uuid keys for new tables');
  }
}

/** Each node's block, by name (nodes not removed; schema version 7 gave one to every node it found). */
export async function sequenceBlocks(db: Queryable): Promise<Map<string, number>> {
  const result = await db.query<{ name: string; block: number }>(
    "SELECT name, sequence_block AS block FROM reshard.node WHERE state <> 'removed' ORDER BY name");
  return new Map(result.rows.map((row) => [row.name, row.block]));
}
