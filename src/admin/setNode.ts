import { getNode, listNodes, lockNodeRow, updateNode, type DatabaseIdentity, type NodeRecord } from '../catalog/nodes.js';
import { migrationAlreadyRunningError, migrationIsHeld, runningMigration } from '../catalog/migrationRuns.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { ReshardError, badInput } from '../core/errors.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { readDatabaseIdentity, sameDatabase } from '../node/databaseIdentity.js';
import { connectNode } from '../plumbing/connectNode.js';
import { assertPeersReachable, pairsWith, withoutPasswords } from './peerReachability.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';

/** What `reshard node set` may change; absent fields stay as they are. */
export interface SetNodeRequest {
  name: string;
  connection?: ConnectionSettings;
  peerConnection?: ConnectionSettings;
  weight?: number;
  concurrencyMax?: number;
  capacityBytes?: number;
}

export interface SetNodeResult {
  node: NodeRecord;
  /** The fields that changed, by their option names. */
  changed: string[];
  warnings: string[];
}

/**
 * Changes a node's address, peer address, weight, concurrency or capacity.
 * A new address must reach the same database (system_identifier and
 * database OID, invariant 7) and, like `node add`, every other node must
 * reach the node's peer address for replication and the node theirs.
 * Refused while a migration runs: its moves hold connections and
 * subscriptions made from the old values.
 */
export async function setNode(access: ClusterAccess, request: SetNodeRequest): Promise<SetNodeResult> {
  if (request.weight !== undefined && (!Number.isFinite(request.weight) || request.weight < 0)) {
    throw badInput(`--weight must be a number ≥ 0, got ${request.weight}`, 'pass e.g. --weight 1');
  }
  if (request.concurrencyMax !== undefined && (!Number.isInteger(request.concurrencyMax) || request.concurrencyMax < 1)) {
    throw badInput(`--concurrency must be a positive integer, got ${request.concurrencyMax}`, 'pass e.g. --concurrency 2');
  }
  if (request.capacityBytes !== undefined && (!Number.isFinite(request.capacityBytes) || request.capacityBytes <= 0)) {
    throw badInput(`--capacity must be a size above 0, got ${request.capacityBytes}`, 'pass e.g. --capacity 500GB');
  }
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    await beginTransaction(catalog);
    try {
      const running = await runningMigration(catalog);
      if (running) throw migrationAlreadyRunningError(running.id, await migrationIsHeld(catalog, running.id));
      await lockNodeRow(catalog, request.name);
      const current = await getNode(catalog, request.name);
      const addressChanged = request.connection !== undefined || request.peerConnection !== undefined;
      const next: NodeRecord = {
        ...current,
        connection: request.connection ? { ...request.connection, password: undefined } : current.connection,
        peerConnection: request.peerConnection ? { ...request.peerConnection, password: undefined } : current.peerConnection,
        weight: request.weight ?? current.weight,
        concurrencyMax: request.concurrencyMax ?? current.concurrencyMax,
        capacityBytes: request.capacityBytes ?? current.capacityBytes,
      };
      let warnings: string[] = [];
      if (request.connection) next.identity = await assertSameDatabase(access, current, request.connection);
      if (addressChanged) {
        const others = (await listNodes(catalog)).filter((node) => node.name !== request.name);
        warnings = await assertPeersReachable(pairsWith(withoutPasswords(next), others), access.passwords);
      }
      await updateNode(catalog, next);
      await commitTransaction(catalog);
      const changed = [
        ...(request.connection ? ['url'] : []), ...(request.peerConnection ? ['peer-url'] : []),
        ...(next.weight !== current.weight ? ['weight'] : []), ...(next.concurrencyMax !== current.concurrencyMax ? ['concurrency'] : []),
        ...(next.capacityBytes !== current.capacityBytes ? ['capacity'] : []),
      ];
      return { node: next, changed, warnings };
    } catch (error) {
      await rollbackQuietly(catalog);
      throw error;
    }
  });
}

/**
 * The identity behind `address`, refused unless it is the node's: the one
 * recorded, else the one its current address reaches now.
 */
async function assertSameDatabase(access: ClusterAccess, node: NodeRecord, address: ConnectionSettings): Promise<DatabaseIdentity> {
  const readAt = async (connection: ConnectionSettings): Promise<DatabaseIdentity> => {
    const client = await connectNode({ name: node.name, connection }, access.passwords, 'reshard node set');
    try {
      return await readDatabaseIdentity(client, `node "${node.name}"`);
    } finally {
      await client.end().catch(() => {});
    }
  };
  const known = node.identity ?? await readAt(node.connection).catch((error: unknown) => {
    throw new ReshardError('precondition', `node "${node.name}" has no recorded identity and its current address ${describeConnection(node.connection)} cannot be reached to read it (${(error as Error).message})`,
      'make the current address reachable once so reshard can confirm the new one reaches the same database', { cause: error });
  });
  const found = await readAt(address);
  if (!sameDatabase(known, found)) {
    throw new ReshardError('conflict',
      `${describeConnection(address)} reaches another database than node "${node.name}" (system ${found.systemIdentifier}, database OID ${found.databaseOid}; the node is system ${known.systemIdentifier}, database OID ${known.databaseOid})`,
      `give --url an address of the node's own database; to put another database in its place, drain the node (\`reshard node remove ${node.name}\`, \`reshard rebalance\`) and add the new one`);
  }
  return found;
}
