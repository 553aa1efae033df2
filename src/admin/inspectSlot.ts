import { getNode } from '../catalog/nodes.js';
import { hasSlot } from '../core/slotMap.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { describeTable, listShardedTables } from '../catalog/tables.js';
import { badInput } from '../core/errors.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { leafName } from '../node/leafName.js';
import { connectNode } from '../plumbing/connectNode.js';
import { leafState } from '../node/slotPartitions.js';
import { leafStats } from '../node/slotStats.js';
import { leafSizeBytes } from '../node/leafSizeBytes.js';

export interface SlotReport {
  slot: number;
  owner: string;
  state: string;
  readFrom: string;
  tables: { table: string; leaf: string; attached: boolean; rows: number; checksum: string; bytes: number }[];
}

/** A slot's owner, and per table its leaf's rows, order-independent checksum and size, read from any node that holds it. */
export async function inspectSlot(access: ClusterAccess, slot: number, nodeName?: string): Promise<SlotReport> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const slotMap = await readSlotMap(catalog);
    if (!hasSlot(slotMap, slot)) {
      const splits = slotMap.owners.length > slotMap.modulus ? ' and the split slots above them' : '';
      throw badInput(`slot ${slot} does not exist; the cluster has slots 0 to ${slotMap.modulus - 1}${splits}`, 'pass a slot number of the slot map (`reshard status` or the dashboard shows them)');
    }
    const owner = slotMap.owners[slot]!;
    const node = await getNode(catalog, nodeName ?? owner);
    const tables = await listShardedTables(catalog);
    const client = await connectNode(node, access.passwords);
    try {
      const report: SlotReport = { slot, owner, state: slotMap.states[slot]!, readFrom: node.name, tables: [] };
      for (const table of tables) {
        const leaf = leafName(table.name, slot, slotMap.modulus);
        const state = await leafState(client, table, slot, slotMap.modulus);
        if (!state.exists) {
          report.tables.push({ table: describeTable(table), leaf, attached: false, rows: 0, checksum: '-', bytes: 0 });
          continue;
        }
        const stats = await leafStats(client, table, slot, slotMap.modulus);
        report.tables.push({ table: describeTable(table), leaf, attached: state.attached, rows: stats.rows, checksum: stats.checksum, bytes: await leafSizeBytes(client, table.schema, leaf) });
      }
      return report;
    } finally {
      await client.end().catch(() => {});
    }
  });
}
