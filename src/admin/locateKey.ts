import { getNode } from '../catalog/nodes.js';
import { slotOfKeyIn } from '../core/slotMap.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { describeTable, getShardedTable } from '../catalog/tables.js';
import { describeConnection } from '../core/connection.js';
import { badInput } from '../core/errors.js';
import { slotOfKey, type ShardKeyType } from '../core/hash.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';

export interface KeyLocation {
  table: string;
  shardKey: string[];
  keyTypes: ShardKeyType[];
  key: string[];
  slot: number;
  owner: string;
  /** The owner as `user@host:port/db`, never with a password. */
  connection: string;
  /** `frozen` while a move switches the slot. */
  state: string;
}

/** `schema.name` or `name` (schema public), as the CLI and `reshard.slot_of` take it. */
function splitTableName(text: string): { schema: string; name: string } {
  const dot = text.indexOf('.');
  return dot < 0 ? { schema: 'public', name: text } : { schema: text.slice(0, dot), name: text.slice(dot + 1) };
}

/**
 * A key's slot and owner: the same answer as `reshard.slot_of` in the catalog
 * (computed here by src/core/hash.ts; the integration test proves both equal
 * to where PostgreSQL routes the row). Key values are given as text, in shard
 * key order.
 */
export async function locateKey(access: ClusterAccess, tableText: string, key: readonly string[]): Promise<KeyLocation> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const { schema, name } = splitTableName(tableText);
    const table = await getShardedTable(catalog, schema, name);
    if (key.length !== table.keyTypes.length) {
      throw badInput(
        `${describeTable(table)} is sharded by (${table.shardKey.join(', ')}) but ${key.length} key value(s) were given`,
        `pass ${table.keyTypes.length} value(s), in that order`,
      );
    }
    const slotMap = await readSlotMap(catalog);
    const slot = slotOfKeyIn(slotMap, table.keyTypes, key);
    const owner = slotMap.owners[slot]!;
    const node = await getNode(catalog, owner);
    return {
      table: describeTable(table),
      shardKey: table.shardKey,
      keyTypes: table.keyTypes,
      key: [...key],
      slot,
      owner,
      connection: describeConnection(node.connection),
      state: slotMap.states[slot]!,
    };
  });
}
