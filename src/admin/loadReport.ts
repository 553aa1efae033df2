import type pg from 'pg';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { readSlotLoad } from '../catalog/slotLoad.js';
import { listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { badInput } from '../core/errors.js';
import { leafActivity, type LeafActivity } from '../node/leafActivity.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { nodeShares, type NodeShare, type SlotLoadOf } from '../planner/loadShares.js';
import { measureSlotBytes } from './clusterSnapshot.js';

/** Where a load figure comes from: routers' reports (calls/s) or the nodes' own counters (scans + tuples written per second). */
export type LoadSource = 'routers' | 'nodes';

export interface SlotLoadFigures extends SlotLoadOf {
  callsPerSec: number;
  rowsWrittenPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface LoadReport {
  source: LoadSource;
  /** 'calls/s' from routers, 'scans+writes/s' from node counters. */
  unit: string;
  windowMs: number;
  /** Routers that reported in the window (0 with source 'nodes'). */
  routers: number;
  totalLoad: number;
  /** Slots with load, busiest first. */
  slots: SlotLoadFigures[];
  nodes: NodeShare[];
}

export interface LoadReportOptions {
  /** Routers' reports over this many ms ending now (default 60 s). */
  windowMs?: number;
  /** Without router reports: two readings of the nodes' counters this far apart (default 5 s). */
  sampleMs?: number;
  /** 'auto' (default): routers when any reported in the window, else nodes. */
  source?: LoadSource | 'auto';
}

export const LOAD_WINDOW_MS_DEFAULT = 60_000;
export const LOAD_SAMPLE_MS_DEFAULT = 5_000;

/** Per slot and per node: the load now against each node's weighted share. */
export async function loadReport(access: ClusterAccess, options: LoadReportOptions = {}): Promise<LoadReport> {
  const windowMs = options.windowMs ?? LOAD_WINDOW_MS_DEFAULT;
  const sampleMs = options.sampleMs ?? LOAD_SAMPLE_MS_DEFAULT;
  if (!(windowMs > 0)) throw badInput(`the load window must be a positive duration, got ${windowMs} ms`, 'pass e.g. --window 60s');
  if (!(sampleMs > 0) || sampleMs > 600_000) throw badInput(`the node sampling time must be between 1 ms and 10 min, got ${sampleMs} ms`, 'pass e.g. --sample 5s');
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const [nodes, tables, slotMap] = [await listNodes(catalog), await listShardedTables(catalog), await readSlotMap(catalog)];
    const slotBytes = await measureSlotBytes(nodes, tables, slotMap, access.passwords);
    const fromRouters = options.source === 'nodes' ? undefined : await routerLoadPeriods(catalog, slotMap, slotBytes, windowMs, 1);
    if (fromRouters && (fromRouters.routers > 0 || options.source === 'routers')) {
      return report('routers', windowMs, fromRouters.routers, nodes, fromRouters.periods[0] ?? []);
    }
    const sampler = new NodeLoadSampler(nodes, tables, access.passwords);
    await sampler.sample(slotMap);
    await new Promise((resolve) => setTimeout(resolve, sampleMs));
    const measured = await sampler.sample(slotMap);
    return report('nodes', measured?.elapsedMs ?? sampleMs, 0, nodes, withBytes(measured?.slots ?? [], slotBytes));
  });
}

function report(source: LoadSource, windowMs: number, routers: number, nodes: readonly NodeRecord[], slots: SlotLoadFigures[]): LoadReport {
  return {
    source, unit: source === 'routers' ? 'calls/s' : 'scans+writes/s', windowMs, routers,
    totalLoad: slots.reduce((sum, slot) => sum + slot.load, 0),
    slots: [...slots].filter((slot) => slot.load > 0).sort((a, b) => b.load - a.load || a.slot - b.slot),
    nodes: nodeShares(balancingNodes(nodes), slots),
  };
}

/** Nodes that should carry load, at their weights (draining and removed nodes at 0). */
export function balancingNodes(nodes: readonly NodeRecord[]): { name: string; weight: number; concurrencyMax: number; capacityBytes?: number }[] {
  return nodes.filter((node) => node.state !== 'removed').map((node) => ({
    name: node.name,
    weight: node.state === 'active' || node.state === 'joining' ? node.weight : 0,
    concurrencyMax: node.concurrencyMax,
    ...(node.capacityBytes !== undefined ? { capacityBytes: node.capacityBytes } : {}),
  }));
}

/**
 * Router-reported load in `periods` periods of `periodMs` ending now (index 0
 * the latest), per slot at its current owner: calls/s is the load.
 */
export async function routerLoadPeriods(
  catalog: pg.ClientBase, slotMap: SlotMapWithStates, slotBytes: readonly number[], periodMs: number, periods: number,
): Promise<{ routers: number; periods: SlotLoadFigures[][] }> {
  const { rows, routers } = await readSlotLoad(catalog, { bucketMs: periodMs, buckets: periods });
  const seconds = periodMs / 1000;
  const result: SlotLoadFigures[][] = Array.from({ length: periods }, () => []);
  for (const row of rows) {
    const owner = slotMap.owners[row.slot];
    // A slot the map no longer has (a split, later): its figures are not attributed to anyone.
    if (owner === undefined) continue;
    result[row.bucket]!.push({
      slot: row.slot, owner, bytes: slotBytes[row.slot] ?? 0, load: row.calls / seconds,
      callsPerSec: row.calls / seconds, rowsWrittenPerSec: row.rowsWritten / seconds, p50Ms: row.p50Ms, p99Ms: row.p99Ms,
    });
  }
  return { routers, periods: result };
}

function withBytes(slots: SlotLoadFigures[], slotBytes: readonly number[]): SlotLoadFigures[] {
  return slots.map((slot) => ({ ...slot, bytes: slotBytes[slot.slot] ?? 0 }));
}

/**
 * Load without routers: each node's per-leaf counters, read twice; the
 * difference per second is the load (scans + tuples written). Keeps the last
 * reading, so a long-running caller gets one figure per call after the first.
 */
export class NodeLoadSampler {
  private last: { atMs: number; byNode: Map<string, LeafActivity[]> } | undefined;

  constructor(private nodes: readonly NodeRecord[], private readonly tables: readonly ShardedTableRecord[], private readonly passwords: PasswordLookup) {}

  setNodes(nodes: readonly NodeRecord[]): void {
    this.nodes = nodes;
  }

  /** Reads every node; from the second call on, returns the load since the previous one (per slot, at the slot's owner). */
  async sample(slotMap: SlotMapWithStates): Promise<{ elapsedMs: number; slots: SlotLoadFigures[] } | undefined> {
    const atMs = Date.now();
    const byNode = new Map<string, LeafActivity[]>();
    const owners = new Set(slotMap.owners);
    await Promise.all(this.nodes.filter((node) => owners.has(node.name)).map(async (node) => {
      const client = await connectNode(node, this.passwords, 'reshard load sampler');
      try {
        byNode.set(node.name, await leafActivity(client, this.tables));
      } finally {
        await client.end().catch(() => {});
      }
    }));
    const previous = this.last;
    this.last = { atMs, byNode };
    if (!previous) return undefined;
    const elapsedMs = Math.max(1, atMs - previous.atMs);
    const seconds = elapsedMs / 1000;
    const slots: SlotLoadFigures[] = [];
    for (const [node, leaves] of byNode) {
      const before = new Map((previous.byNode.get(node) ?? []).map((leaf) => [`${leaf.modulus}/${leaf.remainder}`, leaf]));
      for (const leaf of leaves) {
        // Slot ids are the remainders of the cluster's modulus; a leaf of another modulus (a split slot) is left out here.
        if (leaf.modulus !== slotMap.modulus || slotMap.owners[leaf.remainder] !== node) continue;
        const earlier = before.get(`${leaf.modulus}/${leaf.remainder}`);
        // A leaf that just arrived (or counters reset) has no earlier reading on this node: no figure yet.
        if (!earlier || leaf.tuplesWritten < earlier.tuplesWritten || leaf.scans < earlier.scans) continue;
        const written = (leaf.tuplesWritten - earlier.tuplesWritten) / seconds;
        const scans = (leaf.scans - earlier.scans) / seconds;
        slots.push({ slot: leaf.remainder, owner: node, bytes: 0, load: written + scans, callsPerSec: 0, rowsWrittenPerSec: written, p50Ms: 0, p99Ms: 0 });
      }
    }
    return { elapsedMs, slots };
  }
}
