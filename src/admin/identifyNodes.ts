import type { Queryable } from '../plumbing/queryable.js';
import { ReshardError } from '../core/errors.js';
import { recordNodeIdentity } from '../catalog/nodeIdentity.js';
import type { NodeRecord } from '../catalog/nodes.js';
import { readDatabaseIdentity } from '../node/databaseIdentity.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';

/**
 * Records the identity of nodes added before catalog schema 4, so that a
 * new node can be compared with them. Returns a warning per node that could
 * not be identified (unreachable, or already a second name for another
 * node's database — doctor reports that one): the new node is then not
 * proven distinct from it, though every move still checks both ends.
 */
export async function identifyUnrecordedNodes(catalog: Queryable, nodes: readonly NodeRecord[], passwords: PasswordLookup): Promise<string[]> {
  const warnings: string[] = [];
  for (const node of nodes.filter((candidate) => candidate.state !== 'removed' && candidate.identity === undefined)) {
    try {
      const client = await connectNode(node, passwords, 'reshard node add');
      try {
        await recordNodeIdentity(catalog, node.name, await readDatabaseIdentity(client, `node "${node.name}"`));
      } finally {
        await client.end().catch(() => {});
      }
    } catch (error) {
      if (!(error instanceof ReshardError)) throw error;
      warnings.push(`node "${node.name}": which database it is could not be recorded (${error.message}); run \`reshard doctor\``);
    }
  }
  return warnings;
}
