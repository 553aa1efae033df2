import type pg from 'pg';
import { listNodes } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { colocationGroupKeyTypes, getShardedTable, insertShardedTable, type ShardedTableRecord } from '../catalog/tables.js';
import { ReshardError, badInput } from '../core/errors.js';
import { assertIdentifierFits } from '../core/identifier.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { leafName } from '../node/leafName.js';
import { connectNode } from '../plumbing/connectNode.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import { createParentTable, validateParentTable } from '../node/parentTable.js';
import { createSlotPartitions } from '../node/slotPartitions.js';
import { slotModulus } from '../core/slotMap.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';
import { sequenceBlocks } from '../catalog/sequenceBlocks.js';
import { confineSequencesOnNode } from './sequenceRanges.js';

export interface CreateTableRequest {
  schema?: string;
  name: string;
  shardKey: string[];
  definition: string;
  /** Another sharded table whose slot space this one shares (same key types). */
  colocateWith?: string;
}

/**
 * Creates the hash-partitioned parent on every node and attaches on each node
 * exactly the partitions of the slots it owns. The definition is validated on
 * one node first (in a transaction that is rolled back), so bad input changes
 * nothing anywhere.
 */
export async function createShardedTable(access: ClusterAccess, request: CreateTableRequest): Promise<ShardedTableRecord> {
  const schema = request.schema ?? 'public';
  assertIdentifierFits(request.name, 'table name');
  if (request.shardKey.length === 0) throw badInput('no shard key was given', 'pass --key <column>');
  if (request.definition.trim().length === 0) throw badInput('the table has no column definition', "pass --columns 'id bigint, …, PRIMARY KEY (id)'");

  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    if (nodes.length === 0) throw new ReshardError('precondition', 'the cluster has no nodes', 'add one with `reshard node add` first');
    const slotMap = await readSlotMap(catalog);
    // The longest leaf name must fit PostgreSQL's identifier limit.
    leafName(request.name, slotMap.modulus - 1, slotMap.modulus);
    const existing = await getShardedTable(catalog, schema, request.name).catch(() => undefined);
    if (existing) throw new ReshardError('conflict', `the sharded table "${request.name}" already exists`, 'choose another name');

    const clients: pg.Client[] = [];
    try {
      for (const node of nodes) clients.push(await connectNode(node, access.passwords));
      const spec = { schema, name: request.name, shardKey: request.shardKey, definition: request.definition };
      const keyTypes = await validateParentTable(clients[0]!, spec);
      const colocationGroup = request.colocateWith ? (await getShardedTable(catalog, schema, request.colocateWith)).colocationGroup : request.name;
      const groupTypes = await colocationGroupKeyTypes(catalog, colocationGroup);
      if (groupTypes && groupTypes.join(',') !== keyTypes.join(',')) {
        throw badInput(
          `the shard key of "${request.name}" is (${keyTypes.join(', ')}) but its colocation group "${colocationGroup}" uses (${groupTypes.join(', ')})`,
          'use a shard key of the same types, or do not colocate',
        );
      }
      // Every node in an open transaction; all commit only when all succeeded.
      const blocks = await sequenceBlocks(catalog);
      for (const [index, client] of clients.entries()) {
        const node = nodes[index]!;
        await beginTransaction(client);
        await installNodeHelpers(client);
        await createParentTable(client, spec);
        const owned = slotMap.owners.flatMap((owner, slot) => (owner === node.name ? [slot] : []));
        await createSlotPartitions(client, spec, owned, slotMap.modulus, (slot) => slotModulus(slotMap, slot));
        // Each node's sequences draw from its own block (README "Keys from sequences").
        await confineSequencesOnNode(client, spec, blocks.get(node.name), node.name);
      }
      const record: ShardedTableRecord = { ...spec, keyTypes, colocationGroup };
      await insertShardedTable(catalog, record);
      for (const client of clients) await commitTransaction(client);
      return record;
    } catch (error) {
      await Promise.all(clients.map((client) => rollbackQuietly(client)));
      throw error;
    } finally {
      await Promise.all(clients.map((client) => client.end().catch(() => {})));
    }
  });
}
