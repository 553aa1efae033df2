/** The checker's own sharded tables, colocated: items (insert/delete) and counters (increment). */
export const CHECK_TABLES = [
  { name: 'reshard_check_items', shardKey: ['id'], definition: 'id bigint NOT NULL, worker int NOT NULL, payload text NOT NULL, PRIMARY KEY (id)' },
  { name: 'reshard_check_counters', shardKey: ['id'], definition: 'id bigint NOT NULL, value bigint NOT NULL DEFAULT 0, PRIMARY KEY (id)', colocateWith: 'reshard_check_items' },
] as const;
