import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { openClient } from '../plumbing/connectTo.js';
import type { Queryable } from '../plumbing/queryable.js';
import { readReplicationSettings } from './inspectNode.js';

/**
 * Why a server refuses reshard's own replication connection (the one an
 * adoption creates its slot on and reads its changes over), in PostgreSQL's
 * words and sorted by what fixes it; undefined when it accepts. pg_hba.conf
 * is not among the reasons a preflight meets: it matches a logical
 * replication connection by its database like an ordinary one (the
 * `replication` keyword is for physical replication only), so where the
 * ordinary session got in, this one does too.
 */
export type ReplicationRefusal =
  /** The user lacks the REPLICATION attribute. */
  | { kind: 'privilege'; reason: string }
  /** No WAL sender or replication slot is free (max_wal_senders, max_replication_slots). */
  | { kind: 'capacity'; reason: string }
  | { kind: 'other'; reason: string };

/**
 * Opens one replication connection (replication=database) to `connection`
 * as the adoption will, runs IDENTIFY_SYSTEM and closes it; then, on the
 * ordinary session `db`, checks that a replication slot is free. Creates
 * nothing.
 */
export async function probeReplicationAccess(connection: ConnectionSettings, db: Queryable): Promise<ReplicationRefusal | undefined> {
  let client: pg.Client | undefined;
  try {
    client = await openClient(connection, 'reshard probe', { replication: 'database' } as Partial<pg.ClientConfig>, 'the source (replication probe)');
    await client.query('IDENTIFY_SYSTEM');
  } catch (error) {
    return refusalOf(error);
  } finally {
    await client?.end().catch(() => {});
  }
  const { maxReplicationSlots, replicationSlotsUsed } = await readReplicationSettings(db);
  if (replicationSlotsUsed >= maxReplicationSlots) return { kind: 'capacity', reason: `max_replication_slots = ${maxReplicationSlots}, all in use` };
  return undefined;
}

/** The refusal an error of the connection or of IDENTIFY_SYSTEM means (pure). */
export function refusalOf(error: unknown): ReplicationRefusal {
  const { code, message } = error as { code?: string; message?: string };
  const reason = (message ?? String(error)).split('\n')[0]!.replace(/password=\S+/g, 'password=…');
  // 15: "must be superuser or replication role to start walsender"; 16+: "permission denied to start WAL sender".
  if (code === '42501') return { kind: 'privilege', reason };
  // "number of requested standby connections exceeds max_wal_senders", "all replication slots are in use".
  if (code === '53300' || code === '53400') return { kind: 'capacity', reason };
  return { kind: 'other', reason };
}
