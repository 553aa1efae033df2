import type { DatabaseIdentity } from '../catalog/nodes.js';
import type { Queryable } from '../core/queryable.js';

/**
 * Which database a connection reached: the server's system_identifier (made
 * by initdb, kept by backups and replicas' promotion) and the database's OID.
 * Two addresses (a host name and an IP, a proxy, a tunnel) reach the same
 * node exactly when these agree.
 */
export async function readDatabaseIdentity(db: Queryable): Promise<DatabaseIdentity> {
  const result = await db.query<{ system_identifier: string; database_oid: string }>(
    `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
            (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS database_oid`,
  );
  const row = result.rows[0]!;
  return { systemIdentifier: row.system_identifier, databaseOid: Number(row.database_oid) };
}

export function sameDatabase(left: DatabaseIdentity, right: DatabaseIdentity): boolean {
  return left.systemIdentifier === right.systemIdentifier && left.databaseOid === right.databaseOid;
}
