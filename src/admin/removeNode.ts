import { getNode, listNodes, setNodeState, setNodeWeight } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { ReshardError } from '../core/errors.js';
import { listReferenceTables } from '../catalog/referenceTables.js';
import { describeTable } from '../catalog/tables.js';
import { dropReferenceSubscriptionsOf } from '../coordinator/dropReferenceSubscriptionsOf.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { assertNoAdoptionUnderway } from './adoptionBlocksTopology.js';

export interface RemoveNodeResult {
  name: string;
  /** 'removed' when it owned nothing; 'draining' when `rebalance` must move its slots first. */
  state: 'removed' | 'draining';
  slotsOwned: number;
}

/**
 * A node that owns nothing is removed at once (its reference subscriptions
 * dropped); one that owns slots drains: `rebalance` moves them, then removes
 * it. The holder of a reference table is refused: every copy follows it.
 */
export async function removeNode(access: ClusterAccess, name: string): Promise<RemoveNodeResult> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const node = await getNode(catalog, name);
    await assertNoAdoptionUnderway(catalog, `remove node "${name}"`);
    const references = await listReferenceTables(catalog);
    const held = references.filter((table) => table.holder === name);
    if (held.length > 0) {
      throw new ReshardError('precondition', `"${name}" holds the reference table(s) ${held.map(describeTable).join(', ')}: every other copy replicates from it`,
        `move the holder first: \`reshard table set-holder ${held[0]!.name} OTHER_NODE\`, then remove the node`);
    }
    const nodes = await listNodes(catalog);
    const others = nodes.filter((candidate) => candidate.name !== name && candidate.state === 'active' && candidate.weight > 0);
    if (nodes.length === 1) {
      throw new ReshardError('precondition', `"${name}" is the last node of the cluster`, 'add another node first; a cluster needs at least one');
    }
    const slotMap = await readSlotMap(catalog);
    const slotsOwned = slotMap.owners.filter((owner) => owner === name).length;
    if (slotsOwned > 0 && others.length === 0) {
      throw new ReshardError('precondition', `the ${slotsOwned} slots of "${name}" have nowhere to go: no other active node with a weight above 0`, 'add a node or raise another node\'s weight first');
    }
    if (slotsOwned === 0) {
      await setNodeState(catalog, node.name, 'removed');
      if (references.length > 0) await dropReferenceSubscriptionsOf(node, access);
      return { name, state: 'removed', slotsOwned };
    }
    await setNodeWeight(catalog, node.name, 0);
    await setNodeState(catalog, node.name, 'draining');
    return { name, state: 'draining', slotsOwned };
  });
}

