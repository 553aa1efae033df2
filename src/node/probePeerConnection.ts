import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { quoteIdent, quoteLiteral } from '../core/identifier.js';
import { REPLICATION_NAME_PREFIX, subscriptionConninfo } from './replication.js';

/** Longest one probe may take: a publisher that drops packets must not hang `node add`. */
export const PEER_PROBE_TIMEOUT_MS = 15_000;

/** What a probe found: the subscriber reached the publisher, or PostgreSQL's reason why not. */
export type PeerProbeResult = { reachable: true } | { reachable: false; reason: string; privilege: boolean };

/**
 * Proves that the node behind `subscriber` can connect to `publisher` as a
 * subscription would — same conninfo (the publisher's peer address, params
 * and password), same walsender connection, from the subscriber's machine —
 * without leaving anything behind: CREATE SUBSCRIPTION with connect = true
 * and create_slot = false connects to the publisher (PostgreSQL 15 checked:
 * a refused port or a missing database fails it) and is allowed inside a
 * transaction block, which is then rolled back. The publication need not
 * exist. Needs what the mover needs: a superuser (pg_create_subscription on
 * 16+). `subscriber` must not be inside a transaction.
 */
export async function probePeerConnection(subscriber: pg.ClientBase, publisher: ConnectionSettings): Promise<PeerProbeResult> {
  const name = `${REPLICATION_NAME_PREFIX}probe_${randomBytes(6).toString('hex')}`;
  await subscriber.query('BEGIN');
  try {
    await subscriber.query(`SET LOCAL statement_timeout = ${PEER_PROBE_TIMEOUT_MS}`);
    await subscriber.query(
      `CREATE SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(subscriptionConninfo(publisher))}
         PUBLICATION reshard_probe WITH (connect = true, create_slot = false, enabled = false, slot_name = NONE)`,
    );
    return { reachable: true };
  } catch (error) {
    const { code, message } = error as { code?: string; message?: string };
    return { reachable: false, reason: probeFailureReason(message ?? String(error)), privilege: code === '42501' };
  } finally {
    await subscriber.query('ROLLBACK').catch(() => {});
  }
}

/** PostgreSQL's reason, on one line, without its "could not connect to the publisher:" preface or a password. */
export function probeFailureReason(message: string): string {
  return message
    .replace(/^could not connect to the publisher:\s*/, '')
    .replace(/password=\S+/g, 'password=…')
    .split('\n').map((line) => line.trim()).filter((line) => line !== '').join(' ')
    .replace(/^connection to server at "[^"]*" \([^)]*\), port [0-9]+ failed:\s*|^connection to server at "[^"]*", port [0-9]+ failed:\s*/, '');
}
