/**
 * The catalog schema as numbered migrations, applied in order and recorded in
 * reshard.schema_version. Never edit a released entry: add the next number.
 */
export interface CatalogSchemaVersion {
  version: number;
  description: string;
  sql: string;
}

export const CATALOG_SCHEMA_VERSIONS: readonly CatalogSchemaVersion[] = [
  {
    version: 1,
    description: 'nodes, sharded tables, slot map with epoch, migrations, moves, journal',
    sql: `
CREATE TABLE reshard.cluster (
  id        int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  modulus   int NOT NULL CHECK (modulus > 0),
  epoch     bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Connection parts only: a password is never stored here (use PGPASSWORD,
-- a .pgpass file or the config file).
CREATE TABLE reshard.node (
  name            text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),
  host            text NOT NULL,
  port            int NOT NULL CHECK (port BETWEEN 1 AND 65535),
  database        text NOT NULL,
  username        text NOT NULL,
  weight          double precision NOT NULL DEFAULT 1 CHECK (weight >= 0),
  state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'joining', 'draining', 'removed')),
  concurrency_max int NOT NULL DEFAULT 2 CHECK (concurrency_max >= 1),
  capacity_bytes  bigint CHECK (capacity_bytes > 0),
  server_version  text,
  added_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reshard.colocation_group (
  name      text PRIMARY KEY,
  key_types text[] NOT NULL
);

CREATE TABLE reshard.sharded_table (
  schema_name      text NOT NULL,
  table_name       text NOT NULL,
  shard_key        text[] NOT NULL,
  key_types        text[] NOT NULL,
  colocation_group text NOT NULL REFERENCES reshard.colocation_group (name),
  definition       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, table_name)
);

-- The slot map: one row per slot, exactly one owner each (invariant 1).
CREATE TABLE reshard.slot (
  slot          int PRIMARY KEY CHECK (slot >= 0),
  owner         text NOT NULL REFERENCES reshard.node (name),
  state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'frozen')),
  changed_epoch bigint NOT NULL DEFAULT 0
);

CREATE TABLE reshard.migration (
  id          bigserial PRIMARY KEY,
  state       text NOT NULL CHECK (state IN ('running', 'completed', 'failed', 'cancelled', 'rolled_back')),
  mode        text NOT NULL CHECK (mode IN ('offline', 'online')),
  base_epoch  bigint NOT NULL,
  plan        jsonb NOT NULL,
  bytes_total bigint NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  error       text
);
-- Only one migration may run at a time, whoever starts it.
CREATE UNIQUE INDEX migration_one_running ON reshard.migration ((true)) WHERE state = 'running';

CREATE TABLE reshard.move (
  migration_id bigint NOT NULL REFERENCES reshard.migration (id),
  slot         int NOT NULL,
  source       text NOT NULL REFERENCES reshard.node (name),
  target       text NOT NULL REFERENCES reshard.node (name),
  wave         int NOT NULL,
  bytes_total  bigint NOT NULL DEFAULT 0,
  bytes_copied bigint NOT NULL DEFAULT 0,
  rows_copied  bigint NOT NULL DEFAULT 0,
  state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed', 'rolled_back')),
  step         text,
  started_at   timestamptz,
  finished_at  timestamptz,
  pause_ms     double precision,
  error        text,
  PRIMARY KEY (migration_id, slot),
  CHECK (source <> target)
);

-- Every step is written here before it is taken (action 'begin') and after
-- ('done', 'failed', 'undone'), so a crash can be resumed or undone.
CREATE TABLE reshard.journal (
  id           bigserial PRIMARY KEY,
  migration_id bigint NOT NULL REFERENCES reshard.migration (id),
  slot         int,
  step         text NOT NULL,
  action       text NOT NULL CHECK (action IN ('begin', 'done', 'failed', 'undo', 'undone')),
  at           timestamptz NOT NULL DEFAULT clock_timestamp(),
  detail       jsonb
);
CREATE INDEX journal_by_move ON reshard.journal (migration_id, slot, id);
`,
  },
  {
    version: 2,
    description: 'routers: registration, lease and acknowledged epoch',
    sql: `
-- A router registers here, renews its lease and acknowledges each slot-map
-- epoch it has applied; a freeze waits for every router whose lease is live.
CREATE TABLE reshard.router (
  id             uuid PRIMARY KEY,
  name           text NOT NULL,
  acked_epoch    bigint NOT NULL DEFAULT 0,
  lease_until    timestamptz NOT NULL,
  registered_at  timestamptz NOT NULL DEFAULT now(),
  seen_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX router_by_lease ON reshard.router (lease_until);
`,
  },
  {
    version: 3,
    description: 'migration control: pause and cancel requests for the running coordinator',
    sql: `
-- What an operator asked of a running migration; NULL means run. The
-- coordinator reads it between units of work, so any process (CLI, dashboard)
-- can steer a migration another process runs.
ALTER TABLE reshard.migration
  ADD COLUMN control text CHECK (control IN ('pause', 'cancel')),
  ADD COLUMN control_at timestamptz;
`,
  },
  {
    version: 4,
    description: 'nodes: database identity, libpq parameters, the address peers use',
    sql: `
-- A node is one database (invariant 7): the server's system_identifier and the
-- database's OID, read at node add. Rows added before this version hold NULL
-- until they are read again.
ALTER TABLE reshard.node
  ADD COLUMN system_identifier text,
  ADD COLUMN database_oid      bigint,
  -- libpq parameters besides host, port, dbname and user that reshard honours
  -- (sslmode, sslrootcert, sslcert, sslkey, application_name, connect_timeout).
  -- Never a password.
  ADD COLUMN params            jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (NOT params ? 'password'),
  -- The address the node's peers use to replicate from it, where it differs
  -- from the coordinator's: {"host", "port", "database", "user", "params"}.
  -- NULL: the same as the coordinator's.
  ADD COLUMN peer              jsonb CHECK (peer IS NULL OR NOT (peer ? 'password' OR coalesce(peer->'params', '{}'::jsonb) ? 'password'));
CREATE UNIQUE INDEX node_one_database ON reshard.node (system_identifier, database_oid)
  WHERE state <> 'removed' AND system_identifier IS NOT NULL;
`,
  },
];

export const CATALOG_SCHEMA_VERSION_LATEST = CATALOG_SCHEMA_VERSIONS[CATALOG_SCHEMA_VERSIONS.length - 1]!.version;
