import type { NodeRecord } from '../catalog/nodes.js';
import { readReplicationSettings, type ReplicationSettings } from '../node/inspectNode.js';
import { slotOfLeafName } from '../node/leafName.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { publishedLeaves } from '../node/replication.js';

/**
 * What one node can carry of online moves at once, from its settings and what
 * others already use of them (pure).
 *
 * As a target, each batch's subscription keeps one apply worker alive from its
 * creation to its cleanup: a logical replication worker (max_logical_replication_workers)
 * that is also a background worker (max_worker_processes). reshard copies the
 * data itself (copy_data = false), so no table-sync worker is ever started.
 *
 * As a source, each batch holds one replication slot from its creation to its
 * cleanup, and one WAL sender for its subscription's stream; while its initial
 * copy runs (and for the moment its subscription starts) the replication
 * connection that exported the snapshot is a second WAL sender.
 */
export interface ReplicationCapacity {
  /** Subscriptions (one apply worker each) that may stream into this node at once. */
  subscriptionsMax: number;
  /** The setting that bounds subscriptionsMax. */
  subscriptionsBoundBy: 'max_logical_replication_workers' | 'max_worker_processes';
  /** Batches this node may feed at once as a source (one replication slot and one WAL sender each). */
  publicationsMax: number;
  /** The setting that bounds publicationsMax. */
  publicationsBoundBy: 'max_replication_slots' | 'max_wal_senders';
  /** Initial copies this node may serve at once as a source (one more WAL sender each). */
  copiesMax: number;
}

export type ReplicationCounts = Pick<ReplicationSettings,
  'maxLogicalReplicationWorkers' | 'logicalWorkersUsed' | 'maxWorkerProcesses' | 'backgroundWorkersUsed' | 'launcherRuns' |
  'maxReplicationSlots' | 'replicationSlotsUsed' | 'maxWalSenders' | 'walSendersUsed'>;

/** `concurrencyMax`: the node's own limit on moves at once (`--concurrency`). */
export function replicationCapacity(settings: ReplicationCounts, concurrencyMax: number): ReplicationCapacity {
  const workersFree = Math.max(0, settings.maxLogicalReplicationWorkers - settings.logicalWorkersUsed);
  // The launcher counts among the used background workers once it runs; if it does not run yet, it will need one.
  const processesFree = Math.max(0, settings.maxWorkerProcesses - settings.backgroundWorkersUsed - (settings.launcherRuns ? 0 : 1));
  const slotsFree = Math.max(0, settings.maxReplicationSlots - settings.replicationSlotsUsed);
  const sendersFree = Math.max(0, settings.maxWalSenders - settings.walSendersUsed);
  // k batches alive, c of them copying, need k slots and k + c WAL senders (one batch needs two):
  // the copies get up to half the senders, the streams the rest.
  const copiesBySenders = Math.min(Math.max(1, concurrencyMax), Math.floor(sendersFree / 2));
  const publicationsBySenders = sendersFree - copiesBySenders;
  const publicationsMax = copiesBySenders === 0 ? 0 : Math.min(slotsFree, publicationsBySenders);
  const copiesMax = Math.min(copiesBySenders, publicationsMax);
  return {
    subscriptionsMax: Math.min(workersFree, processesFree),
    subscriptionsBoundBy: processesFree < workersFree ? 'max_worker_processes' : 'max_logical_replication_workers',
    publicationsMax,
    publicationsBoundBy: publicationsBySenders < slotsFree ? 'max_wal_senders' : 'max_replication_slots',
    copiesMax,
  };
}

/**
 * The value a setting needs for `wanted` batches at once on this node (as
 * target for the workers, as source for slots and senders), counting what
 * others use. For the fix an operator runs.
 */
export function settingValueNeeded(
  setting: ReplicationCapacity['subscriptionsBoundBy'] | ReplicationCapacity['publicationsBoundBy'],
  settings: ReplicationCounts,
  wanted: number,
  copiesAtOnce: number,
): number {
  switch (setting) {
    case 'max_logical_replication_workers':
      return settings.logicalWorkersUsed + wanted;
    case 'max_worker_processes':
      return settings.backgroundWorkersUsed + (settings.launcherRuns ? 0 : 1) + wanted;
    case 'max_replication_slots':
      return settings.replicationSlotsUsed + wanted;
    case 'max_wal_senders':
      return settings.walSendersUsed + wanted + Math.max(1, copiesAtOnce);
  }
}

/** Each node's replication settings, read once, counting as "used" only what is not `ownPrefix`'s. */
export async function readNodesReplicationSettings(nodes: readonly NodeRecord[], passwords: PasswordLookup, ownPrefix?: string): Promise<Map<string, ReplicationSettings>> {
  // The nodes at once: each read is a new connection (a server process).
  const read = await Promise.all(nodes.map(async (node) => {
    const client = await connectNode(node, passwords);
    try {
      return [node.name, await readReplicationSettings(client, ownPrefix)] as const;
    } finally {
      await client.end().catch(() => {});
    }
  }));
  return new Map(read);
}

/**
 * Each batch an interrupted run of the migration opened (its publication
 * exists on the source): its name and the slots its publication carries.
 */
export async function readOpenedBatches(
  sources: readonly NodeRecord[], passwords: PasswordLookup, prefix: string, tables: readonly { name: string }[], modulus: number,
): Promise<{ name: string; slots: number[] }[]> {
  const opened: { name: string; slots: number[] }[] = [];
  // The sources at once, their batches in the sources' order.
  const published = await Promise.all(sources.map(async (node) => {
    const client = await connectNode(node, passwords);
    try {
      return await publishedLeaves(client, prefix);
    } finally {
      await client.end().catch(() => {});
    }
  }));
  for (const { publication, leaves } of published.flat()) {
    const slots = new Set(leaves.flatMap((leaf) => tables.flatMap((table) => slotOfLeafName(table.name, leaf.name, modulus) ?? [])));
    if (slots.size > 0) opened.push({ name: publication, slots: [...slots] });
  }
  return opened;
}
