import { assertIdentifierFits } from './identifier.js';

/**
 * The names one adoption gives things. The sharded parent lives on every node
 * under `stagedName` until the cutover renames it to the table's own name (a
 * source may be a node of the cluster, where the old table holds that name
 * until then); the old table, where it had to give up its name, is kept as
 * `keptName` until `table forget-source`. Leaves are named after the final
 * table from the start (`users_s0017`), so nothing about them changes at the
 * cutover. Replication slots carry the migration's prefix, so `doctor` and
 * leftover checks find them like a move's.
 */
export interface AdoptNames {
  stagedName: string;
  keptName: string;
  /** The logical replication slot on source `index`. */
  slotName(index: number): string;
}

export function adoptNames(table: string, migrationId: number): AdoptNames {
  const names = {
    stagedName: `${table}__adopting`,
    keptName: `${table}__adopted_m${migrationId}`,
    slotName: (index: number) => `reshard_m${migrationId}_adopt${index}`,
  };
  assertIdentifierFits(names.stagedName, 'the staged table name');
  assertIdentifierFits(names.keptName, 'the kept old table name');
  return names;
}
