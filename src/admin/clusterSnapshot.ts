import type pg from 'pg';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { ReshardError } from '../core/errors.js';
import { measureSpaces } from '../coordinator/nodeSpaces.js';
import { capacityUnknown } from '../planner/headroom.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { PlanInput, PlannerNode } from '../planner/index.js';

export { HEADROOM_FRACTION_DEFAULT } from '../coordinator/nodeSpaces.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { slotSizesOnNode } from '../node/slotStats.js';

export interface ClusterSnapshot {
  nodes: NodeRecord[];
  tables: ShardedTableRecord[];
  slotMap: SlotMapWithStates;
  /** Bytes per slot, summed over every sharded table, measured on the owners. */
  slotBytes: number[];
}

/** Measures each slot's size on the node that owns it (all tables of the slot). */
export async function measureSlotBytes(nodes: readonly NodeRecord[], tables: readonly ShardedTableRecord[], slotMap: SlotMapWithStates, passwords: PasswordLookup): Promise<number[]> {
  // By slot id: split slots have ids above the modulus.
  const slotBytes = new Array<number>(Math.max(slotMap.modulus, slotMap.owners.length)).fill(0);
  if (tables.length === 0) return slotBytes;
  const owners = new Set(slotMap.owners);
  await Promise.all(nodes.filter((node) => owners.has(node.name)).map(async (node) => {
    const client = await connectNode(node, passwords);
    try {
      for (const table of tables) {
        const sizes = await slotSizesOnNode(client, table);
        for (const [slot, bytes] of sizes) {
          if (slotMap.owners[slot] === node.name) slotBytes[slot] = (slotBytes[slot] ?? 0) + bytes;
        }
      }
    } finally {
      await client.end().catch(() => {});
    }
  }));
  return slotBytes;
}

export async function readClusterSnapshot(catalog: pg.ClientBase, passwords: PasswordLookup, options: { measure?: boolean } = {}): Promise<ClusterSnapshot> {
  const [nodes, tables, slotMap] = [await listNodes(catalog), await listShardedTables(catalog), await readSlotMap(catalog)];
  if (slotMap.owners.length === 0) {
    throw new ReshardError('precondition', 'the cluster has no nodes yet', 'add one with `reshard node add <name> --url postgres://…`');
  }
  const slotBytes = options.measure === false
    ? new Array<number>(Math.max(slotMap.modulus, slotMap.owners.length)).fill(0)
    : await measureSlotBytes(nodes, tables, slotMap, passwords);
  return { nodes, tables, slotMap, slotBytes };
}

/** The cluster as `reshard plan` sees it: nodes, tables, slot map and measured slot sizes (schema checked first). */
export async function readClusterForPlan(access: ClusterAccess): Promise<ClusterSnapshot> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    return readClusterSnapshot(catalog, access.passwords);
  });
}

/** The names of `nodes` whose capacity is unknown (measured remotely, no --capacity): the disk headroom cannot protect them. */
export async function nodesOfUnknownCapacity(nodes: readonly NodeRecord[], passwords: PasswordLookup): Promise<string[]> {
  return capacityUnknown((await measureSpaces(nodes, passwords)).values());
}

/** The target node set: every node that is not draining, at its weight. */
export function plannerInput(snapshot: ClusterSnapshot): PlanInput {
  const targets: PlannerNode[] = snapshot.nodes
    .filter((node) => node.state === 'active' || node.state === 'joining')
    .filter((node) => node.weight > 0)
    .map((node) => ({
      name: node.name,
      weight: node.weight,
      concurrencyMax: node.concurrencyMax,
      ...(node.capacityBytes !== undefined ? { capacityBytes: node.capacityBytes } : {}),
    }));
  if (targets.length === 0) {
    throw new ReshardError('precondition', 'no node is left to own the slots', 'add a node, or keep at least one node with a weight above 0');
  }
  return { slotMap: snapshot.slotMap, nodes: targets, slotBytes: snapshot.slotBytes };
}
