/** What `reshard doctor` reports: one finding per check and subject. */
export type FindingSeverity = 'error' | 'warning' | 'ok';

/** The checks in the order findings are listed. */
export const DOCTOR_CHECKS = [
  'catalog', 'migration', 'frozen_slot',
  'reachable', 'duplicate_database', 'database_identity', 'wal_level', 'privileges', 'replication_slots', 'logical_workers', 'wal_retrieve_retry_interval', 'timeouts', 'capacity',
  'parent_table', 'replica_identity',
  'orphan_subscription', 'orphan_replication_slot', 'orphan_publication', 'fence_trigger', 'change_trigger', 'staged_leaf',
  'reference_copy', 'slot_map_drift',
] as const;
export type DoctorCheck = (typeof DOCTOR_CHECKS)[number];

/** Where a finding applies: the catalog, or a node by name. */
export const CATALOG_SUBJECT = 'catalog';

export interface DoctorFinding {
  severity: FindingSeverity;
  node: string;
  check: DoctorCheck;
  message: string;
  /** What the operator runs to fix it; undefined for ok findings. */
  fix: string | undefined;
  /** With --fix: doctor repaired it (the message says what it did). */
  fixed: boolean;
}
