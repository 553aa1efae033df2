import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { nodeRecordedAs, sameDatabaseError } from '../catalog/nodeIdentity.js';
import { duplicateNodeError, insertNode, listNodes, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { lockSlotMapForWrite, readSlotMap, respreadSlotMap, writeInitialSlotMap } from '../catalog/slotMap.js';
import { lockNodeAdds } from '../catalog/nodeAddLock.js';
import { listShardedTables } from '../catalog/tables.js';
import type { ConnectionSettings } from '../core/connection.js';
import { badInput, errorText, ReshardError } from '../core/errors.js';
import { listReferenceTables } from '../catalog/referenceTables.js';
import { syncReferenceCopies } from './referenceTables.js';
import { assertIdentifierFits } from '../core/identifier.js';
import { initialSlotMap } from '../core/slotMap.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { identifyUnrecordedNodes } from './identifyNodes.js';
import { assertNodeUsable, inspectNode, onlineMoverWarnings } from '../node/inspectNode.js';
import { connectTo } from '../plumbing/connectTo.js';
import { readDatabaseIdentity } from '../node/databaseIdentity.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import { createParentTable } from '../node/parentTable.js';
import { assertPeersReachable, pairsWith, withoutPasswords } from './peerReachability.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';
import { assignSequenceBlock } from '../catalog/sequenceBlocks.js';
import { confineSequencesOnNode } from './sequenceRanges.js';
import { assertNoAdoptionUnderway } from './adoptionBlocksTopology.js';

export interface AddNodeRequest {
  name: string;
  connection: ConnectionSettings;
  /** Where the other nodes reach this one to replicate from it, when not at `connection`. */
  peerConnection?: ConnectionSettings;
  weight?: number;
  concurrencyMax?: number;
  capacityBytes?: number;
}

export interface AddNodeResult {
  node: NodeRecord;
  warnings: string[];
  /** True when the cluster had no data yet, so the slot map was spread over all nodes at once. */
  slotMapRespread: boolean;
}

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function assertNodeName(name: string): void {
  if (!NODE_NAME.test(name)) {
    throw badInput(`node name "${name}" is not allowed`, 'use letters, digits, "_", "." or "-" (at most 63, starting with a letter or digit)');
  }
  assertIdentifierFits(name, 'node name');
}

/**
 * Checks a node (reachable, version, settings), prepares it (helpers, the
 * parents of existing sharded tables with no partitions) and records it, then
 * copies and subscribes every reference table there and waits until the copies are in sync. While
 * the cluster holds no sharded table, the slot map is spread over all nodes at
 * once — nothing to move yet; afterwards a new node waits for `rebalance`.
 */
export async function addNode(access: ClusterAccess, request: AddNodeRequest): Promise<AddNodeResult> {
  assertNodeName(request.name);
  const weight = request.weight ?? 1;
  if (!Number.isFinite(weight) || weight < 0) throw badInput(`--weight must be a number ≥ 0, got ${weight}`, 'pass e.g. --weight 1');
  const concurrencyMax = request.concurrencyMax ?? 2;
  if (!Number.isInteger(concurrencyMax) || concurrencyMax < 1) throw badInput(`--concurrency must be a positive integer, got ${concurrencyMax}`, 'pass e.g. --concurrency 2');

  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const password = access.passwords(request.name);
    // Nodes recorded before identities were kept are identified first, in their own statements: what is learnt stays, whatever this add comes to.
    const identityWarnings = await identifyUnrecordedNodes(catalog, await listNodes(catalog), access.passwords);
    // One add at a time, and the node's DDL commits only after its catalog
    // row: a concurrent add of the same name then fails cleanly before it
    // touches its server, and a failed add leaves nothing on the node.
    await beginTransaction(catalog);
    let nodeClient: pg.Client | undefined;
    try {
      await lockNodeAdds(catalog);
      await assertNoAdoptionUnderway(catalog, `add node "${request.name}"`);
      const existing = await listNodes(catalog, { includeRemoved: true });
      if (existing.some((node) => node.name === request.name && node.state !== 'removed')) throw duplicateNodeError(request.name);
      nodeClient = await connectTo({ role: `node "${request.name}"`, connection: { ...request.connection, ...(password !== undefined ? { password } : {}) } });
      const facts = await inspectNode(nodeClient);
      assertNodeUsable(request.name, facts);
      // A node is a database, once (invariant 7): a second name for it would let a move compare a table with itself.
      const identity = await readDatabaseIdentity(nodeClient, `node "${request.name}"`);
      const other = await nodeRecordedAs(catalog, identity, request.name);
      if (other !== undefined) throw sameDatabaseError(request.name, other, identity);
      const peerWarnings = await assertPeersReachable(pairsWith(withoutPasswords(request), existing.filter((node) => node.state !== 'removed')), access.passwords,
        (publisher) => publisher === request.name ? `pass --peer-url with an address of "${request.name}" that the other nodes reach` : undefined);
      const tables = await listShardedTables(catalog);
      const cluster = await getCluster(catalog);
      await beginTransaction(nodeClient);
      await installNodeHelpers(nodeClient);
      // A node added again after a drain still has the empty parents of its first membership.
      for (const table of tables) await createParentTable(nodeClient, table, { replaceEmpty: true });
      const node: NodeRecord = {
        name: request.name,
        connection: { ...request.connection, password: undefined },
        weight,
        state: 'active',
        concurrencyMax,
        capacityBytes: request.capacityBytes,
        serverVersion: facts.serverVersion,
        identity,
        peerConnection: request.peerConnection ? { ...request.peerConnection, password: undefined } : undefined,
      };
      const slotMapRespread = await recordNode(catalog, node, tables.length === 0, cluster.modulus);
      // A fresh sequence block, never one a node had before; the new parents' sequences draw from it.
      const block = await assignSequenceBlock(catalog, request.name);
      for (const table of tables) await confineSequencesOnNode(nodeClient, table, block, request.name);
      await commitTransaction(catalog);
      // Should this commit fail, the catalog has a node without parents: `reshard doctor` reports them with the CREATE to run.
      await commitTransaction(nodeClient);
      // Every reference table, copied and subscribed, before `node add` returns; until its copies are
      // in sync `rebalance` refuses to move slots onto this node (a join there would miss rows).
      const referenceTables = await listReferenceTables(catalog);
      if (referenceTables.length > 0) {
        await syncReferenceCopies(access, [...existing.filter((member) => member.state !== 'removed'), node], referenceTables, [node]).catch((error: unknown) => {
          const reason = error instanceof ReshardError ? error.message : errorText(error);
          throw new ReshardError(error instanceof ReshardError ? error.code : 'precondition', `node "${request.name}" was added but its reference table copies are not in sync (${reason})`,
            'run `reshard doctor --fix` (it copies and subscribes them again); `rebalance` moves no slot onto the node before', { cause: error });
        });
      }
      return { node, warnings: [...identityWarnings, ...onlineMoverWarnings(request.name, facts), ...peerWarnings], slotMapRespread };
    } catch (error) {
      await rollbackQuietly(catalog);
      await rollbackQuietly(nodeClient);
      throw error;
    } finally {
      await nodeClient?.end().catch(() => {});
    }
  });
}

/** Records the node (and spreads the slot map while the cluster holds no data), inside the caller's transaction. */
async function recordNode(catalog: pg.ClientBase, node: NodeRecord, clusterIsEmpty: boolean, modulus: number): Promise<boolean> {
  await lockSlotMapForWrite(catalog);
  await insertNode(catalog, node);
  const slotMap = await readSlotMap(catalog);
  if (slotMap.owners.length > 0 && !clusterIsEmpty) return false;
  const active = (await listNodes(catalog)).filter((candidate) => candidate.state === 'active' && candidate.weight > 0);
  const owners = initialSlotMap(active.map((candidate) => candidate.name), modulus).owners;
  if (slotMap.owners.length === 0) {
    await writeInitialSlotMap(catalog, owners);
  } else {
    await respreadSlotMap(catalog, owners);
  }
  return true;
}
