import type { ConnectionSettings } from '../core/connection.js';
import type { DatabaseIdentity } from '../core/databaseIdentity.js';
import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';

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
  /** The server's `system_identifier` and the database's OID: which database this node is (invariant 7). Undefined for nodes recorded before schema version 4 until read again. */
  identity?: DatabaseIdentity | undefined;
  /** Where the node's peers reach it to replicate from it, when not at `connection`. Never carries a password. */
  peerConnection?: ConnectionSettings | undefined;
}

export type { DatabaseIdentity } from '../core/databaseIdentity.js';

/** The address a peer uses to reach `node` (its peer address, else the coordinator's). */
export function peerConnectionOf(node: Pick<NodeRecord, 'connection' | 'peerConnection'>): ConnectionSettings {
  return node.peerConnection ?? node.connection;
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
  system_identifier: string | null;
  database_oid: string | null;
  params: Record<string, string> | null;
  peer: StoredConnection | null;
}

/** A connection as the catalog's jsonb column holds it: no password. */
interface StoredConnection {
  host: string;
  port: number;
  database: string;
  user: string;
  params?: Record<string, string>;
}

function storedConnection(connection: ConnectionSettings): StoredConnection {
  return { host: connection.host, port: connection.port, database: connection.database, user: connection.user, params: withoutPassword(connection.params) };
}

function withoutPassword(params: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const { password: _password, ...rest } = params ?? {};
  return rest;
}

function hasParams(params: Readonly<Record<string, string>> | null | undefined): params is Readonly<Record<string, string>> {
  return params !== null && params !== undefined && Object.keys(params).length > 0;
}

function nodeFromRow(row: NodeRow): NodeRecord {
  return {
    name: row.name,
    connection: { host: row.host, port: row.port, database: row.database, user: row.username, ...(hasParams(row.params) ? { params: row.params } : {}) },
    weight: row.weight,
    state: row.state,
    concurrencyMax: row.concurrency_max,
    capacityBytes: row.capacity_bytes === null ? undefined : Number(row.capacity_bytes),
    serverVersion: row.server_version ?? undefined,
    identity: row.system_identifier !== null && row.database_oid !== null
      ? { systemIdentifier: row.system_identifier, databaseOid: Number(row.database_oid) }
      : undefined,
    peerConnection: row.peer === null
      ? undefined
      : { host: row.peer.host, port: row.peer.port, database: row.peer.database, user: row.peer.user, ...(hasParams(row.peer.params) ? { params: row.peer.params } : {}) },
  };
}

export async function insertNode(db: Queryable, node: Omit<NodeRecord, 'state'> & { state?: NodeState }): Promise<void> {
  // A removed node's name may be used again (its row stays for the history of moves).
  const result = await db.query(
    `INSERT INTO reshard.node (name, host, port, database, username, weight, state, concurrency_max, capacity_bytes, server_version,
                               system_identifier, database_oid, params, peer)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ON CONFLICT (name) DO UPDATE SET host = excluded.host, port = excluded.port, database = excluded.database,
       username = excluded.username, weight = excluded.weight, state = excluded.state, concurrency_max = excluded.concurrency_max,
       capacity_bytes = excluded.capacity_bytes, server_version = excluded.server_version,
       system_identifier = excluded.system_identifier, database_oid = excluded.database_oid, params = excluded.params,
       peer = excluded.peer, added_at = now()
     WHERE reshard.node.state = 'removed'`,
    [node.name, node.connection.host, node.connection.port, node.connection.database, node.connection.user,
      node.weight, node.state ?? 'active', node.concurrencyMax, node.capacityBytes ?? null, node.serverVersion ?? null,
      node.identity?.systemIdentifier ?? null, node.identity?.databaseOid ?? null,
      JSON.stringify(withoutPassword(node.connection.params)),
      node.peerConnection ? JSON.stringify(storedConnection(node.peerConnection)) : null],
  );
  if (result.rowCount !== 1) throw duplicateNodeError(node.name);
}

export function duplicateNodeError(name: string): ReshardError {
  return new ReshardError('conflict', `a node named "${name}" already exists`, 'choose another name, or `reshard node remove` the old one first');
}

/** Nodes that are not removed, ordered by name. */
export async function listNodes(db: Queryable, options: { includeRemoved?: boolean } = {}): Promise<NodeRecord[]> {
  const result = await db.query<NodeRow>(
    `SELECT name, host, port, database, username, weight, state, concurrency_max, capacity_bytes::text, server_version,
            system_identifier, database_oid::text, params, peer
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

/**
 * Writes a node's address, peer address, limits and identity as given (the
 * name and state stay). Never a password: `storedConnection` drops it.
 */
export async function updateNode(db: Queryable, node: NodeRecord): Promise<void> {
  await db.query(
    `UPDATE reshard.node
        SET host = $2, port = $3, database = $4, username = $5, params = $6, peer = $7,
            weight = $8, concurrency_max = $9, capacity_bytes = $10, system_identifier = $11, database_oid = $12
      WHERE name = $1`,
    [node.name, node.connection.host, node.connection.port, node.connection.database, node.connection.user,
      JSON.stringify(withoutPassword(node.connection.params)),
      node.peerConnection ? JSON.stringify(storedConnection(node.peerConnection)) : null,
      node.weight, node.concurrencyMax, node.capacityBytes ?? null,
      node.identity?.systemIdentifier ?? null, node.identity?.databaseOid ?? null],
  );
}

/** Holds `name`'s row until the transaction ends: two changes to one node do not interleave. */
export async function lockNodeRow(db: Queryable, name: string): Promise<void> {
  await db.query('SELECT 1 FROM reshard.node WHERE name = $1 FOR UPDATE', [name]);
}
