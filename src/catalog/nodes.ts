import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../core/queryable.js';

export type NodeState = 'active' | 'joining' | 'draining' | 'removed';

/** A node as the catalog knows it. The connection never carries a password here. */
export interface NodeRecord {
  name: string;
  connection: ConnectionSettings;
  weight: number;
  state: NodeState;
  concurrencyMax: number;
  capacityBytes: number | undefined;
  serverVersion: string | undefined;
}

interface NodeRow {
  name: string;
  host: string;
  port: number;
  database: string;
  username: string;
  weight: number;
  state: NodeState;
  concurrency_max: number;
  capacity_bytes: string | null;
  server_version: string | null;
}

function nodeFromRow(row: NodeRow): NodeRecord {
  return {
    name: row.name,
    connection: { host: row.host, port: row.port, database: row.database, user: row.username },
    weight: row.weight,
    state: row.state,
    concurrencyMax: row.concurrency_max,
    capacityBytes: row.capacity_bytes === null ? undefined : Number(row.capacity_bytes),
    serverVersion: row.server_version ?? undefined,
  };
}

export async function insertNode(db: Queryable, node: Omit<NodeRecord, 'state'> & { state?: NodeState }): Promise<void> {
  // A removed node's name may be used again (its row stays for the history of moves).
  const result = await db.query(
    `INSERT INTO reshard.node (name, host, port, database, username, weight, state, concurrency_max, capacity_bytes, server_version)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (name) DO UPDATE SET host = excluded.host, port = excluded.port, database = excluded.database,
       username = excluded.username, weight = excluded.weight, state = excluded.state, concurrency_max = excluded.concurrency_max,
       capacity_bytes = excluded.capacity_bytes, server_version = excluded.server_version, added_at = now()
     WHERE reshard.node.state = 'removed'`,
    [node.name, node.connection.host, node.connection.port, node.connection.database, node.connection.user,
      node.weight, node.state ?? 'active', node.concurrencyMax, node.capacityBytes ?? null, node.serverVersion ?? null],
  );
  if (result.rowCount !== 1) throw duplicateNodeError(node.name);
}

export function duplicateNodeError(name: string): ReshardError {
  return new ReshardError('conflict', `a node named "${name}" already exists`, 'choose another name, or `reshard node remove` the old one first');
}

/** Nodes that are not removed, ordered by name. */
export async function listNodes(db: Queryable, options: { includeRemoved?: boolean } = {}): Promise<NodeRecord[]> {
  const result = await db.query<NodeRow>(
    `SELECT name, host, port, database, username, weight, state, concurrency_max, capacity_bytes::text, server_version
       FROM reshard.node WHERE $1 OR state <> 'removed' ORDER BY name`,
    [options.includeRemoved ?? false],
  );
  return result.rows.map(nodeFromRow);
}

export async function getNode(db: Queryable, name: string): Promise<NodeRecord> {
  const nodes = await listNodes(db, { includeRemoved: true });
  const node = nodes.find((candidate) => candidate.name === name);
  if (!node || node.state === 'removed') {
    const known = nodes.filter((n) => n.state !== 'removed').map((n) => n.name);
    throw new ReshardError('not_found', `no node named "${name}"`, `use one of: ${known.join(', ') || '(none; add one with `reshard node add`)'}`);
  }
  return node;
}

export async function setNodeState(db: Queryable, name: string, state: NodeState): Promise<void> {
  await db.query('UPDATE reshard.node SET state = $2 WHERE name = $1', [name, state]);
}

export async function setNodeWeight(db: Queryable, name: string, weight: number): Promise<void> {
  await db.query('UPDATE reshard.node SET weight = $2 WHERE name = $1', [name, weight]);
}
