import { ensureCluster, type ClusterRecord } from '../catalog/cluster.js';
import { upgradeCatalogSchema } from '../catalog/schema.js';
import { badInput } from '../core/errors.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';

/** The largest slot count reshard accepts: beyond it, planning and DDL costs outgrow any benefit. */
export const SLOTS_MAX = 16_384;

export function assertSlotCount(slots: number): void {
  if (!Number.isInteger(slots) || slots < 1 || slots > SLOTS_MAX) {
    throw badInput(`--slots must be a positive integer up to ${SLOTS_MAX}, got ${String(slots)}`, 'pass e.g. --slots 256');
  }
}

/** Creates or upgrades the catalog schema and records the slot count. */
export async function initCluster(access: Pick<ClusterAccess, 'catalog'>, slots: number): Promise<{ cluster: ClusterRecord; schemaVersionsApplied: number[] }> {
  assertSlotCount(slots);
  return withCatalog(access, async (client) => {
    const schemaVersionsApplied = await upgradeCatalogSchema(client);
    const cluster = await ensureCluster(client, slots);
    return { cluster, schemaVersionsApplied };
  });
}
