import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import type { ShardKeyType } from '../core/hash.js';
import type { Queryable } from '../plumbing/queryable.js';
import { SLOT_MAP_CHANNEL } from './slotMap.js';

/** What a router needs of the catalog to route: the epoch, each slot's owner, the frozen slots and the nodes' addresses. */
export interface RouterMapRead {
  epoch: number;
  /** The cluster's modulus (every slot's, until one is split). */
  modulus: number;
  /** By slot id (undefined where no slot has the id, after splits). */
  owners: (string | undefined)[];
  /** By slot id, each slot's modulus; absent when no slot was split. */
  slotModuli?: (number | undefined)[];
  frozen: number[];
  nodes: { name: string; connection: ConnectionSettings }[];
}

/** Reads the router's map in one statement, so the epoch and the slots are one consistent snapshot. */
export async function readRouterMap(catalog: Queryable): Promise<RouterMapRead> {
  const result = await catalog.query<{ epoch: string; modulus: number; owners: string[]; slots: number[]; moduli: (number | null)[]; frozen: number[]; nodes: { name: string; host: string; port: number; database: string; username: string; params: Record<string, string> | null }[] }>(
    `SELECT c.epoch::text, c.modulus,
            (SELECT array_agg(owner ORDER BY slot) FROM reshard.slot) AS owners,
            (SELECT array_agg(slot ORDER BY slot) FROM reshard.slot) AS slots,
            (SELECT array_agg(nullif(modulus, c.modulus) ORDER BY slot) FROM reshard.slot) AS moduli,
            (SELECT coalesce(array_agg(slot ORDER BY slot), '{}') FROM reshard.slot WHERE state = 'frozen') AS frozen,
            (SELECT json_agg(json_build_object('name', name, 'host', host, 'port', port, 'database', database, 'username', username, 'params', params))
               FROM reshard.node WHERE state <> 'removed') AS nodes
       FROM reshard.cluster c WHERE c.id = 1`,
  );
  const row = result.rows[0];
  if (!row || !row.owners) throw new ReshardError('precondition', 'the catalog has no slot map', 'run `reshard init` and add nodes first');
  const owners: (string | undefined)[] = [];
  const moduli: (number | undefined)[] = [];
  row.slots.forEach((slot, index) => {
    owners[slot] = row.owners[index]!;
    if (row.moduli[index] !== null) moduli[slot] = row.moduli[index]!;
  });
  return {
    epoch: Number(row.epoch),
    modulus: row.modulus,
    owners,
    ...(moduli.length > 0 ? { slotModuli: moduli } : {}),
    frozen: row.frozen,
    nodes: (row.nodes ?? []).map((node) => ({ name: node.name, connection: {
      host: node.host, port: node.port, database: node.database, user: node.username,
      ...(node.params && Object.keys(node.params).length > 0 ? { params: node.params } : {}),
    } })),
  };
}

/** The shard key types of each colocation group, by group name. */
export async function colocationKeyTypes(catalog: Queryable): Promise<ShardKeyType[][]> {
  const groups = await catalog.query<{ key_types: ShardKeyType[] }>('SELECT key_types FROM reshard.colocation_group ORDER BY name');
  return groups.rows.map((row) => row.key_types);
}

/** Makes `client` receive a notification whenever the slot map changes (its epoch is bumped). */
export async function listenForSlotMapChanges(client: pg.ClientBase): Promise<void> {
  await client.query(`LISTEN ${SLOT_MAP_CHANNEL}`);
}
