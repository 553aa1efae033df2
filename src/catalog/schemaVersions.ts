/**
 * The catalog schema as numbered versions, applied in order and recorded in
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
  {
    version: 5,
    description: 'reshard.slot_of(table, key...): a key\'s slot and owner, computed as PostgreSQL routes the row',
    sql: `
-- The slot of a key, exactly as PostgreSQL's hash partitioning routes the row
-- (src/core/hash.ts is the same algorithm): each key column is hashed by its
-- type's extended hash function with HASH_PARTITION_SEED (0x7A5B22367996DCFD),
-- the column hashes are folded with hash_combine64 starting from 0, and the
-- slot is that 64-bit row hash modulo M, unsigned. SQL has no unsigned 64-bit
-- type, so the sums run in numeric and the XOR in bigint (the same 64 bits).
-- Values come as text and are cast to the column's type here, so a mixed key
-- (bigint, text) can be passed in one array. NULL keys are not routed.
CREATE FUNCTION reshard.hash_partition_slot(key_types text[], key_values text[], modulus int)
RETURNS int LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
  seed constant bigint := 8816678312871386365;        -- HASH_PARTITION_SEED as a signed int8
  combine constant numeric := 5305509591434766563;    -- hash_combine64's 0x49a0f4dd15e5a8e3
  two_pow_54 constant numeric := 18014398509481984;
  two_pow_63 constant numeric := 9223372036854775808;
  two_pow_64 constant numeric := 18446744073709551616;
  row_hash numeric := 0;                               -- unsigned, in [0, 2^64)
  column_hash bigint;
  column_hash_unsigned numeric;
  sum_unsigned numeric;
BEGIN
  IF modulus IS NULL OR modulus < 1 THEN
    RAISE EXCEPTION 'slot count % is not a positive integer', modulus USING ERRCODE = '22023';
  END IF;
  IF coalesce(cardinality(key_types), 0) = 0 OR cardinality(key_types) <> coalesce(cardinality(key_values), 0) THEN
    RAISE EXCEPTION 'the shard key has % column(s) but % value(s) were given', coalesce(cardinality(key_types), 0), coalesce(cardinality(key_values), 0)
      USING ERRCODE = '22023', HINT = 'pass one value per shard key column, in key order';
  END IF;
  FOR i IN 1 .. cardinality(key_types) LOOP
    IF key_values[i] IS NULL THEN
      RAISE EXCEPTION 'shard key column % is NULL', i USING ERRCODE = '22004', HINT = 'reshard does not route NULL keys';
    END IF;
    -- IF, not CASE: a CASE could be planned with every branch's cast applied to the value.
    IF key_types[i] = 'bigint' THEN
      column_hash := hashint8extended(key_values[i]::bigint, seed);
    ELSIF key_types[i] = 'integer' THEN
      column_hash := hashint4extended(key_values[i]::integer, seed);
    ELSIF key_types[i] = 'text' THEN
      column_hash := hashtextextended(key_values[i], seed);
    ELSIF key_types[i] = 'uuid' THEN
      column_hash := uuid_hash_extended(key_values[i]::uuid, seed);
    ELSE
      RAISE EXCEPTION 'shard key type % is not one reshard routes', key_types[i] USING ERRCODE = '0A000';
    END IF;
    column_hash_unsigned := CASE WHEN column_hash < 0 THEN column_hash + two_pow_64 ELSE column_hash END;
    -- hash_combine64(a, b) = a XOR (b + 0x49a0f4dd15e5a8e3 + (a << 54) + (a >> 7)), mod 2^64
    sum_unsigned := mod(column_hash_unsigned + combine + mod(row_hash, 1024) * two_pow_54 + div(row_hash, 128), two_pow_64);
    row_hash := (CASE WHEN row_hash >= two_pow_63 THEN row_hash - two_pow_64 ELSE row_hash END)::bigint
              # (CASE WHEN sum_unsigned >= two_pow_63 THEN sum_unsigned - two_pow_64 ELSE sum_unsigned END)::bigint;
    IF row_hash < 0 THEN
      row_hash := row_hash + two_pow_64;
    END IF;
  END LOOP;
  RETURN mod(row_hash, modulus)::int;
END
$fn$;

-- The key types of a sharded table named 'name' or 'schema.name', or an error
-- that says what is wrong.
CREATE FUNCTION reshard.shard_key_types(table_name text)
RETURNS text[] LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  name_parts text[] := parse_ident(table_name);
  types text[];
  tables_found int;
BEGIN
  SELECT min(t.key_types::text)::text[], count(*) INTO types, tables_found
    FROM reshard.sharded_table t
   WHERE t.table_name = name_parts[cardinality(name_parts)]
     AND (cardinality(name_parts) = 1 OR t.schema_name = name_parts[1]);
  IF tables_found = 0 THEN
    RAISE EXCEPTION 'no sharded table named "%"', table_name USING ERRCODE = '42P01', HINT = 'SELECT schema_name, table_name FROM reshard.sharded_table lists them';
  ELSIF tables_found > 1 THEN
    RAISE EXCEPTION 'more than one sharded table is named "%"', table_name USING ERRCODE = '42P09', HINT = 'qualify it: ''schema.table''';
  END IF;
  RETURN types;
END
$fn$;

-- SELECT * FROM reshard.slot_of('users', 42::bigint): the key's slot, its owner,
-- the owner's connection as user@host:port/db (never a password) and the
-- slot's state (frozen while a move switches it). The table is 'name' or
-- 'schema.name'; key values in shard key order, typed or as text (text for a
-- mixed key: slot_of('orders', '42', 'abc')). Plain SQL, so a query over many
-- keys inlines it: the table's key types and M are read once (the scalar
-- subqueries), and each key costs one hash_partition_slot.
CREATE FUNCTION reshard.slot_of(table_name text, VARIADIC key_values text[])
RETURNS TABLE (slot int, owner text, connection text, state text)
LANGUAGE sql STABLE AS $fn$
  SELECT s.slot, s.owner, format('%s@%s:%s/%s', n.username, n.host, n.port, n.database), s.state
    FROM reshard.slot s JOIN reshard.node n ON n.name = s.owner
   WHERE s.slot = reshard.hash_partition_slot((SELECT reshard.shard_key_types(table_name)), key_values, (SELECT c.modulus FROM reshard.cluster c))
$fn$;

-- The same for typed values: slot_of('users', 42::bigint), slot_of('users', id) in a query.
CREATE FUNCTION reshard.slot_of(table_name text, VARIADIC key_values anyarray)
RETURNS TABLE (slot int, owner text, connection text, state text)
LANGUAGE sql STABLE AS $fn$
  SELECT * FROM reshard.slot_of(table_name, VARIADIC key_values::text[])
$fn$;
`,
  },
  {
    version: 6,
    description: 'reference tables: small tables kept in full on every node, written on one holder',
    sql: `
-- A reference table exists whole on every node; writes go to its holder, and
-- logical replication (publication reshard_ref on the holder, one subscription
-- per other node) carries them to every other copy.
CREATE TABLE reshard.reference_table (
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  holder      text NOT NULL REFERENCES reshard.node (name),
  definition  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, table_name)
);
`,
  },
  {
    version: 7,
    description: 'sequence blocks: each node draws sequence-fed keys from its own block of bigint',
    sql: `
-- Block b is [b * 2^48, (b + 1) * 2^48 - 1]; block 0 (values below 2^48) is
-- left to what tables held before reshard. Blocks come from a sequence, so a
-- node added again under an old name gets a new one: its old keys may still
-- live on other nodes.
CREATE SEQUENCE reshard.sequence_block_seq AS int MINVALUE 1 MAXVALUE 32767 NO CYCLE;
ALTER TABLE reshard.node ADD COLUMN sequence_block int UNIQUE;
UPDATE reshard.node SET sequence_block = nextval('reshard.sequence_block_seq') WHERE state <> 'removed';
`,
  },
  {
    version: 8,
    description: 'split slots: each slot has its own modulus (r of M → r and r + M of 2M); moves of kind split and merge; slot_of under mixed moduli',
    sql: `
-- A slot is one hash partition (modulus, remainder). Its id stays its
-- remainder: in a valid map no two slots share one (they would overlap), so
-- ids, leaf names and journal rows stay valid, and a split adds id r + M.
-- NULL: the cluster's modulus (every slot of a map never split).
ALTER TABLE reshard.slot ADD COLUMN modulus int CHECK (modulus IS NULL OR modulus > slot);

-- A split or a merge is journaled as a move of its slot on one node (source = target).
ALTER TABLE reshard.move ADD COLUMN kind text NOT NULL DEFAULT 'move' CHECK (kind IN ('move', 'split', 'merge'));
ALTER TABLE reshard.move DROP CONSTRAINT move_check;
ALTER TABLE reshard.move ADD CONSTRAINT move_ends_differ CHECK (kind <> 'move' OR source <> target);

-- The slot of a key under mixed moduli, as PostgreSQL routes the row: the row
-- hash modulo the largest modulus, then the one slot (m, r) with r = that mod m
-- (the moduli divide each other). The moduli are read once per query.
CREATE OR REPLACE FUNCTION reshard.slot_of(table_name text, VARIADIC key_values text[])
RETURNS TABLE (slot int, owner text, connection text, state text)
LANGUAGE sql STABLE AS $fn$
  SELECT s.slot, s.owner, format('%s@%s:%s/%s', n.username, n.host, n.port, n.database), s.state
    FROM (SELECT array_agg(DISTINCT coalesce(x.modulus, c.modulus)) AS moduli FROM reshard.slot x, reshard.cluster c) m,
         LATERAL (SELECT reshard.hash_partition_slot((SELECT reshard.shard_key_types(table_name)), key_values,
                                                     (SELECT max(v) FROM unnest(m.moduli) v)) AS remainder) k,
         reshard.slot s JOIN reshard.node n ON n.name = s.owner, reshard.cluster c
   WHERE s.slot IN (SELECT k.remainder % v FROM unnest(m.moduli) v)
     AND k.remainder % coalesce(s.modulus, c.modulus) = s.slot
$fn$;
`,
  },
  {
    version: 9,
    description: 'adoption: an existing plain table turned into a sharded table, online (reshard table adopt)',
    sql: `
-- A sharded table being adopted is registered (its parent and slot leaves exist
-- on every node under a staged name) but not yet served: 'adopting' until the
-- switch. Everything that lists sharded tables for moves, verify and routing
-- reads 'active' ones only.
ALTER TABLE reshard.sharded_table
  ADD COLUMN state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'adopting'));

-- An adoption runs as a migration of its own kind (one at a time with
-- rebalances, journaled, resumable).
ALTER TABLE reshard.migration DROP CONSTRAINT migration_mode_check;
ALTER TABLE reshard.migration ADD CONSTRAINT migration_mode_check CHECK (mode IN ('offline', 'online', 'adopt'));

-- One adoption: which table, from where (connection parts, never a password),
-- and where it stands. streaming: copied and followed, the source serves;
-- cutover: the sources are being fenced, routers hold calls; switched: the
-- nodes serve, the old tables are kept fenced; returning: a rollback moves
-- writes back; rolled_back; forgotten: the old tables are dropped.
CREATE TABLE reshard.adoption (
  migration_id bigint PRIMARY KEY REFERENCES reshard.migration (id),
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  shard_key    text NOT NULL,
  key_type     text NOT NULL,
  staged_name  text NOT NULL,
  kept_name    text NOT NULL,
  sources      jsonb NOT NULL CHECK (jsonb_typeof(sources) = 'array' AND NOT sources::text LIKE '%"password"%'),
  state        text NOT NULL DEFAULT 'streaming' CHECK (state IN ('streaming', 'cutover', 'switched', 'returning', 'rolled_back', 'forgotten')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  switched_at  timestamptz
);
CREATE INDEX adoption_by_table ON reshard.adoption (schema_name, table_name);
`,
  },
  {
    version: 10,
    description: 'load per slot reported by routers; the autopilot\'s lease and decision journal',
    sql: `
-- One row per router, slot and reporting period: only slots that had calls.
-- Latencies are each router's own percentiles over the period (a router keeps
-- a histogram per slot in memory and sends these two numbers).
CREATE TABLE reshard.slot_load (
  router_id    uuid NOT NULL,
  slot         int NOT NULL CHECK (slot >= 0),
  period_start timestamptz NOT NULL,
  period_ms    int NOT NULL CHECK (period_ms > 0),
  calls        bigint NOT NULL CHECK (calls >= 0),
  rows_written bigint NOT NULL CHECK (rows_written >= 0),
  p50_ms       real NOT NULL,
  p99_ms       real NOT NULL,
  PRIMARY KEY (router_id, slot, period_start)
);
CREATE INDEX slot_load_by_period ON reshard.slot_load (period_start);

-- One active autopilot per catalog: the holder renews lease_until; a second
-- autopilot waits until it lapses.
CREATE TABLE reshard.autopilot_lease (
  id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  holder      text NOT NULL,
  lease_until timestamptz NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now()
);

-- Every decision of the autopilot, acted on or not, with its numbers.
CREATE TABLE reshard.autopilot_decision (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  holder       text NOT NULL,
  kind         text NOT NULL,
  acted        boolean NOT NULL,
  migration_id bigint REFERENCES reshard.migration (id),
  summary      text NOT NULL,
  details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX autopilot_decision_by_migration ON reshard.autopilot_decision (migration_id) WHERE migration_id IS NOT NULL;
`,
  },
  {
    version: 11,
    description: 'load per slot: each period\'s latency histogram (non-empty buckets), so that p99 over many slots and periods is the p99 of their calls',
    sql: `
-- Bucket b holds calls up to 0.05 ms × 2^(b/4) (src/core/latencyHistogram.ts);
-- the two arrays list the non-empty buckets and their calls. NULL from routers
-- older than this version: readers then fall back to p99_ms.
ALTER TABLE reshard.slot_load ADD COLUMN latency_buckets smallint[], ADD COLUMN latency_counts int[];
`,
  },
];

export const CATALOG_SCHEMA_VERSION_LATEST = CATALOG_SCHEMA_VERSIONS[CATALOG_SCHEMA_VERSIONS.length - 1]!.version;
