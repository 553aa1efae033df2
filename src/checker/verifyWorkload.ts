import { slotOfKeyIn } from '../core/slotMap.js';
import type pg from 'pg';
import { listNodes } from '../catalog/nodes.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { verifyCluster } from '../admin/verifyCluster.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import { reshardReplicationObjects } from '../node/replication.js';
import { isReferenceReplicationName } from '../node/referenceTable.js';
import type { WorkloadLog } from './workload.js';

export interface CheckReport {
  ok: boolean;
  violations: string[];
  insertsAcked: number;
  deletesAcked: number;
  incrementsAcked: number;
  unknownOutcomes: number;
  rowsChecked: number;
}

/**
 * Proves, from what every node holds, that the workload's acknowledged writes
 * survived the rebalance: each acknowledged insert exactly once and on its
 * slot's owner, each counter equal to its acknowledged increments, no
 * acknowledged delete back; plus the cluster invariants and no leftover
 * replication objects. Unknown outcomes are allowed either way, never counted.
 */
export async function verifyWorkload(access: ClusterAccess, log: WorkloadLog): Promise<CheckReport> {
  const violations: string[] = [];
  const { nodes, slotMap } = await withCatalog(access, async (catalog) => ({ nodes: await listNodes(catalog), slotMap: await readSlotMap(catalog) }));
  const itemHolders = new Map<number, string[]>();
  const counterValues = new Map<number, { node: string; value: number }[]>();
  const leftovers: string[] = [];
  await Promise.all(nodes.map(async (node) => {
    const client: pg.Client = await connectNode(node, access.passwords, 'reshard checker');
    try {
      const items = await client.query<{ id: string }>('SELECT id::text FROM reshard_check_items');
      for (const row of items.rows) {
        const id = Number(row.id);
        itemHolders.set(id, [...(itemHolders.get(id) ?? []), node.name]);
      }
      const counters = await client.query<{ id: string; value: string }>('SELECT id::text, value::text FROM reshard_check_counters');
      for (const row of counters.rows) {
        const id = Number(row.id);
        counterValues.set(id, [...(counterValues.get(id) ?? []), { node: node.name, value: Number(row.value) }]);
      }
      const objects = await reshardReplicationObjects(client);
      for (const name of [...objects.publications, ...objects.subscriptions, ...objects.slots]) {
        if (!isReferenceReplicationName(name)) leftovers.push(`${node.name}: ${name}`);
      }
    } finally {
      await client.end().catch(() => {});
    }
  }));
  const ownerOf = (id: number): string => slotMap.owners[slotOfKeyIn(slotMap, ['bigint'], [id])]!;

  for (const id of log.insertedAcked) {
    const holders = itemHolders.get(id) ?? [];
    const deleted = log.deletedAcked.has(id);
    const maybeDeleted = log.deletedUnknown.has(id);
    if (deleted && holders.length > 0) violations.push(`acknowledged delete of item ${id} came back (on ${holders.join(', ')})`);
    if (!deleted && !maybeDeleted && holders.length !== 1) violations.push(`acknowledged insert of item ${id} exists ${holders.length} times${holders.length ? ` (on ${holders.join(', ')})` : ''}`);
    if (holders.length === 1 && holders[0] !== ownerOf(id)) violations.push(`item ${id} is on ${holders[0]} but its slot belongs to ${ownerOf(id)}`);
    if (holders.length > 1) violations.push(`item ${id} exists on several nodes: ${holders.join(', ')}`);
  }
  for (const [id, holders] of itemHolders) {
    if (!log.insertedAcked.has(id) && !log.insertedUnknown.has(id)) violations.push(`item ${id} exists but was never inserted`);
    else if (log.insertedUnknown.has(id) && holders.length > 1) violations.push(`item ${id} (unknown outcome) exists on several nodes: ${holders.join(', ')}`);
  }
  for (const [id, copies] of counterValues) {
    if (copies.length !== 1) {
      violations.push(`counter ${id} exists ${copies.length} times (${copies.map((copy) => copy.node).join(', ')})`);
      continue;
    }
    const { node, value } = copies[0]!;
    if (node !== ownerOf(id)) violations.push(`counter ${id} is on ${node} but its slot belongs to ${ownerOf(id)}`);
    const acked = log.incrementsAcked.get(id) ?? 0;
    const unknown = log.incrementsUnknown.get(id) ?? 0;
    if (value < acked || value > acked + unknown) violations.push(`counter ${id} is ${value}, but ${acked} increments were acknowledged (${unknown} unknown)`);
  }
  for (const id of log.incrementsAcked.keys()) {
    if (!counterValues.has(id)) violations.push(`counter ${id} with acknowledged increments is missing`);
  }
  violations.push(...log.anomalies);
  const cluster = await verifyCluster(access);
  violations.push(...cluster.problems.map((problem) => `invariant: ${problem}`));
  violations.push(...leftovers.map((leftover) => `leftover replication object on ${leftover}`));
  const incrementsAcked = [...log.incrementsAcked.values()].reduce((sum, count) => sum + count, 0);
  const unknownOutcomes = log.insertedUnknown.size + log.deletedUnknown.size + [...log.incrementsUnknown.values()].reduce((sum, count) => sum + count, 0);
  return {
    ok: violations.length === 0,
    violations,
    insertsAcked: log.insertedAcked.size,
    deletesAcked: log.deletedAcked.size,
    incrementsAcked,
    unknownOutcomes,
    rowsChecked: itemHolders.size + counterValues.size,
  };
}
