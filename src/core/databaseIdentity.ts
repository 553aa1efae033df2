/** One database in the world: a server (its `system_identifier`) and a database OID on it. */
export interface DatabaseIdentity {
  systemIdentifier: string;
  databaseOid: number;
}
