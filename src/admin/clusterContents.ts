import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';

export { describeTable } from '../catalog/tables.js';
export type { NodeRecord, ShardedTableRecord };

/** The cluster's nodes and each slot's owner, as `reshard node list` shows them. */
export async function readNodeList(access: ClusterAccess): Promise<{ nodes: NodeRecord[]; owners: readonly (string | undefined)[] }> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    return { nodes: await listNodes(catalog), owners: (await readSlotMap(catalog)).owners };
  });
}

/** The sharded tables, as `reshard table list` shows them. */
export async function readShardedTables(access: ClusterAccess): Promise<ShardedTableRecord[]> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    return listShardedTables(catalog);
  });
}
