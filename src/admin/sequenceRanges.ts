import type { NodeRecord } from '../catalog/nodes.js';
import { listNodes } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { sequenceBlocks } from '../catalog/sequenceBlocks.js';
import { ReshardError } from '../core/errors.js';
import { sequenceBlockRange } from '../core/sequenceBlock.js';
import { confineTableSequences, type SequenceState } from '../node/sequenceRange.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import type { Queryable } from '../plumbing/queryable.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';

export type { SequenceState } from '../node/sequenceRange.js';

/** A table as sequence ranges need it. */
export interface SequencedTable {
  schema: string;
  name: string;
}

/** Confines the table's sequences on one node to that node's block; in the caller's transaction. */
export async function confineSequencesOnNode(node: Queryable, table: SequencedTable, block: number | undefined, nodeName: string): Promise<SequenceState[]> {
  if (block === undefined) {
    throw new ReshardError('precondition', `node ${nodeName} has no sequence block in the catalog`, 'run `reshard init` to upgrade the catalog schema');
  }
  return confineTableSequences(node, table, sequenceBlockRange(block));
}

/**
 * After a table has its parents on every node (table create, or adopt's
 * switch): every node's copy of each sequence that feeds one of its columns
 * draws from that node's own block only, so keys stay unique whichever node
 * an insert lands on. Idempotent; each node in its own transaction. Moves
 * never touch sequences: a moved row keeps its key, and no node's block
 * overlaps another's. Returns each node's sequences as set.
 */
export async function assignSequenceRanges(access: ClusterAccess, table: SequencedTable): Promise<Map<string, SequenceState[]>> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const nodes: NodeRecord[] = await listNodes(catalog);
    const blocks = await sequenceBlocks(catalog);
    const result = new Map<string, SequenceState[]>();
    for (const node of nodes) {
      const client = await connectNode(node, access.passwords, 'reshard sequences');
      try {
        await beginTransaction(client);
        result.set(node.name, await confineSequencesOnNode(client, table, blocks.get(node.name), node.name));
        await commitTransaction(client);
      } catch (error) {
        await rollbackQuietly(client);
        throw error;
      } finally {
        await client.end().catch(() => {});
      }
    }
    return result;
  });
}
