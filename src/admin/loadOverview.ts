import { slotIds, slotOwner } from '../core/slotMap.js';
import type { NodeRecord } from '../catalog/nodes.js';
import type { SlotMapWithStates } from '../catalog/slotMap.js';
import { listAutopilotDecisions, type AutopilotDecision } from '../catalog/autopilotDecisions.js';
import { readAutopilotLease } from '../catalog/autopilotLease.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { nodeShares, type NodeShare } from '../planner/index.js';
import { balancingNodes, routerLoadPeriods } from './loadReport.js';

/** Load per slot (a heat map over the slot map) and per node, as routers reported it, and the autopilot's state. */
export interface LoadOverview {
  windowMs: number;
  routers: number;
  /** Index = slot id: calls/s and the highest p99 any router saw (0 without calls). */
  callsPerSecBySlot: number[];
  p99MsBySlot: number[];
  nodes: NodeShare[];
  autopilot: { holder: string; leaseUntil: Date; acquiredAt: Date } | undefined;
  decisions: AutopilotDecision[];
}

/** One read of the catalog (routers' reports over `windowMs`, the lease, the latest decisions). */
export async function readLoadOverview(access: ClusterAccess, cluster: { nodes: readonly NodeRecord[]; slotMap: SlotMapWithStates }, windowMs: number, decisionsMax: number): Promise<LoadOverview> {
  return withCatalog(access, async (catalog) => {
    const { routers, periods } = await routerLoadPeriods(catalog, cluster.slotMap, [], windowMs, 1);
    const figures = periods[0] ?? [];
    const callsPerSecBySlot = new Array<number>(cluster.slotMap.owners.length).fill(0);
    const p99MsBySlot = new Array<number>(cluster.slotMap.owners.length).fill(0);
    for (const figure of figures) {
      callsPerSecBySlot[figure.slot] = figure.callsPerSec;
      p99MsBySlot[figure.slot] = figure.p99Ms;
    }
    const slots = slotIds(cluster.slotMap).map((slot) => ({ slot, owner: slotOwner(cluster.slotMap, slot), load: callsPerSecBySlot[slot]!, bytes: 0 }));
    return {
      windowMs, routers, callsPerSecBySlot, p99MsBySlot, nodes: nodeShares(balancingNodes(cluster.nodes), slots),
      autopilot: await readAutopilotLease(catalog), decisions: await listAutopilotDecisions(catalog, decisionsMax),
    };
  });
}
