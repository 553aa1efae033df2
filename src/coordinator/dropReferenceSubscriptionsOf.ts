import type { NodeRecord } from '../catalog/nodes.js';
import { dropReferenceSubscriptions } from '../node/referenceTable.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import { errorFields, log } from '../plumbing/log.js';

const logger = log('coordinator');

/**
 * Drops a removed node's reference subscriptions (and with them its slots on
 * the holders). Best effort: a node being removed may be gone already; its
 * slots on the holders are then left for `reshard doctor --fix`.
 */
export async function dropReferenceSubscriptionsOf(node: NodeRecord, access: ClusterAccess): Promise<void> {
  try {
    const client = await connectNode(node, access.passwords);
    try {
      await dropReferenceSubscriptions(client);
    } finally {
      await client.end().catch(() => {});
    }
  } catch (error) {
    logger.warn({ node: node.name, ...errorFields(error) }, 'the reference subscriptions of a removed node could not be dropped: its slots on the holders pin WAL until `reshard doctor --fix`');
  }
}
