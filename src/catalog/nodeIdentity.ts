import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';
import type { DatabaseIdentity } from './nodes.js';

export function sameDatabase(a: DatabaseIdentity, b: DatabaseIdentity): boolean {
  return a.systemIdentifier === b.systemIdentifier && a.databaseOid === b.databaseOid;
}

/** "server 7312…, database OID 16384": how an identity is shown. */
export function describeDatabaseIdentity(identity: DatabaseIdentity): string {
  return `server ${identity.systemIdentifier}, database OID ${identity.databaseOid}`;
}

/** One key per database, for grouping nodes. */
export function databaseIdentityKey(identity: DatabaseIdentity): string {
  return `${identity.systemIdentifier}/${identity.databaseOid}`;
}

/** The node (not removed, other than `exceptName`) recorded as this database, if any. */
export async function nodeRecordedAs(db: Queryable, identity: DatabaseIdentity, exceptName: string): Promise<string | undefined> {
  const result = await db.query<{ name: string }>(
    `SELECT name FROM reshard.node
      WHERE system_identifier = $1 AND database_oid = $2 AND state <> 'removed' AND name <> $3
      ORDER BY name LIMIT 1`,
    [identity.systemIdentifier, identity.databaseOid, exceptName],
  );
  return result.rows[0]?.name;
}

/**
 * Records the identity of a node added before catalog schema 4, read when it
 * was next connected. A node whose identity is recorded keeps it: a
 * different one later means its URL reaches another database, which the
 * caller refuses instead. Refused here when another node is that database.
 */
export async function recordNodeIdentity(db: Queryable, name: string, identity: DatabaseIdentity): Promise<void> {
  const other = await nodeRecordedAs(db, identity, name);
  if (other !== undefined) throw sameDatabaseError(name, other, identity, SAME_DATABASE_FIX_RECORDED);
  try {
    await db.query(
      `UPDATE reshard.node SET system_identifier = $2, database_oid = $3
        WHERE name = $1 AND state <> 'removed' AND system_identifier IS NULL`,
      [name, identity.systemIdentifier, identity.databaseOid],
    );
  } catch (error) {
    // The catalog's unique index: another process recorded that database for another node in between.
    if ((error as { code?: string }).code !== '23505') throw error;
    throw sameDatabaseError(name, (await nodeRecordedAs(db, identity, name)) ?? 'another node', identity, SAME_DATABASE_FIX_RECORDED);
  }
}

/** Two node names for one database (invariant 7): nothing is recorded, nothing moves. */
export function sameDatabaseError(name: string, other: string, identity: DatabaseIdentity, fix?: string): ReshardError {
  return new ReshardError('conflict',
    `node "${name}" is the same database as node "${other}" (${describeDatabaseIdentity(identity)}): a move between them would compare a table with itself and drop the only copy`,
    fix ?? `give each database one node: use "${other}", or point "${name}" at the database you meant (a DNS alias, or an IP and a host name, reach one database)`);
}

/** For two nodes already in the catalog: which name to keep is the operator's call, and no data moves between them. */
export const SAME_DATABASE_FIX_RECORDED = 'keep one node per database: `reshard doctor` shows which name owns slots and how to retire the other; never move or drop data between the two names';

/** A node's URL now reaches another database than the one recorded for it (a DNS or address change). */
export function identityChangedError(name: string, recorded: DatabaseIdentity, now: DatabaseIdentity): ReshardError {
  return new ReshardError('precondition',
    `node "${name}" now reaches another database (${describeDatabaseIdentity(now)}) than the one recorded for it (${describeDatabaseIdentity(recorded)})`,
    `point "${name}"'s host and port back at its own database (check DNS and addresses); reshard moves nothing to or from it meanwhile`);
}
