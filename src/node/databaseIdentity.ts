import type { DatabaseIdentity } from '../core/databaseIdentity.js';
import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';

/**
 * Which database a session is connected to, whatever name reached it: the
 * server's `system_identifier` (made by initdb, kept by physical replicas)
 * and the database's OID on that server. Two URLs — a DNS alias, an IP and a
 * host name — reach the same database exactly when these are equal.
 */
export async function readDatabaseIdentity(db: Queryable, what: string): Promise<DatabaseIdentity> {
  try {
    const result = await db.query<{ system_identifier: string; database_oid: string }>(
      `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
              (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS database_oid`,
    );
    const row = result.rows[0]!;
    return { systemIdentifier: row.system_identifier, databaseOid: Number(row.database_oid) };
  } catch (error) {
    if ((error as { code?: string }).code !== '42501') throw error;
    throw new ReshardError('precondition', `${what} does not let reshard read which database it is (pg_control_system())`,
      'connect as a superuser, or GRANT EXECUTE ON FUNCTION pg_control_system() TO the reshard role', { cause: error });
  }
}

export function sameDatabase(left: DatabaseIdentity, right: DatabaseIdentity): boolean {
  return left.systemIdentifier === right.systemIdentifier && left.databaseOid === right.databaseOid;
}
