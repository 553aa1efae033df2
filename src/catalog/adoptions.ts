import type pg from 'pg';
import type { JournalInStatement } from './journal.js';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import type { ShardKeyType } from '../core/hash.js';
import type { Queryable } from '../plumbing/queryable.js';
import { claimRunningPlace } from './migrationRuns.js';
import { SLOT_MAP_CHANNEL } from './slotMap.js';

export type AdoptionState = 'streaming' | 'cutover' | 'switched' | 'returning' | 'rolled_back' | 'forgotten';

/** One source of an adoption: how to reach it (never a password) and, if it is a node of the cluster, which. */
export interface AdoptionSource {
  connection: ConnectionSettings;
  node?: string;
}

export interface AdoptionRecord {
  migrationId: number;
  schema: string;
  name: string;
  keyColumn: string;
  keyType: ShardKeyType;
  stagedName: string;
  keptName: string;
  sources: AdoptionSource[];
  state: AdoptionState;
  /** The migration's own state (running while the adoption runs or was interrupted). */
  migrationState: string;
}

interface AdoptionRow {
  migration_id: string; schema_name: string; table_name: string; shard_key: string; key_type: ShardKeyType;
  staged_name: string; kept_name: string; sources: AdoptionSource[]; state: AdoptionState; migration_state: string;
}

const ADOPTION_COLUMNS = `a.migration_id::text, a.schema_name, a.table_name, a.shard_key, a.key_type, a.staged_name, a.kept_name, a.sources, a.state, m.state AS migration_state`;

function adoptionFromRow(row: AdoptionRow): AdoptionRecord {
  return {
    migrationId: Number(row.migration_id), schema: row.schema_name, name: row.table_name, keyColumn: row.shard_key, keyType: row.key_type,
    stagedName: row.staged_name, keptName: row.kept_name, sources: row.sources, state: row.state, migrationState: row.migration_state,
  };
}

function withoutPassword(source: AdoptionSource): AdoptionSource {
  const { password: _password, ...connection } = source.connection;
  return { connection, ...(source.node !== undefined ? { node: source.node } : {}) };
}

/**
 * Claims the single running-migration place for an adoption (mode 'adopt',
 * no moves) and records it, one transaction.
 */
export async function createAdoption(
  client: pg.ClientBase,
  adoption: Omit<AdoptionRecord, 'migrationId' | 'state' | 'migrationState' | 'stagedName' | 'keptName'>,
  names: (migrationId: number) => { stagedName: string; keptName: string },
  baseEpoch: number,
): Promise<number> {
  return claimRunningPlace(client, async () => {
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO reshard.migration (state, mode, base_epoch, plan) VALUES ('running', 'adopt', $1, $2) RETURNING id::text`,
      [baseEpoch, JSON.stringify({ adopt: `${adoption.schema}.${adoption.name}`, key: adoption.keyColumn, sources: adoption.sources.length })],
    );
    const id = Number(inserted.rows[0]!.id);
    const { stagedName, keptName } = names(id);
    await client.query(
      `INSERT INTO reshard.adoption (migration_id, schema_name, table_name, shard_key, key_type, staged_name, kept_name, sources)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [id, adoption.schema, adoption.name, adoption.keyColumn, adoption.keyType, stagedName, keptName, JSON.stringify(adoption.sources.map(withoutPassword))],
    );
    // Routers that route the table (AdoptingTable) learn at once that it is now adopting.
    await client.query(`WITH bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch) SELECT pg_notify('${SLOT_MAP_CHANNEL}', epoch::text) FROM bumped`);
    return id;
  });
}

export async function getAdoption(db: Queryable, migrationId: number): Promise<AdoptionRecord | undefined> {
  const result = await db.query<AdoptionRow>(
    `SELECT ${ADOPTION_COLUMNS} FROM reshard.adoption a JOIN reshard.migration m ON m.id = a.migration_id WHERE a.migration_id = $1`, [migrationId],
  );
  return result.rows[0] ? adoptionFromRow(result.rows[0]) : undefined;
}

/** The latest adoption of a table (any state), or of any table. */
export async function latestAdoption(db: Queryable, table?: { schema: string; name: string }): Promise<AdoptionRecord | undefined> {
  const result = await db.query<AdoptionRow>(
    `SELECT ${ADOPTION_COLUMNS} FROM reshard.adoption a JOIN reshard.migration m ON m.id = a.migration_id
      WHERE ($1::text IS NULL OR (a.schema_name = $1 AND a.table_name = $2)) ORDER BY a.migration_id DESC LIMIT 1`,
    [table?.schema ?? null, table?.name ?? null],
  );
  return result.rows[0] ? adoptionFromRow(result.rows[0]) : undefined;
}

/**
 * The channel on which an adoption's state changes are announced with the
 * new state in the payload (`AdoptionStateChange` as JSON), besides the slot
 * map's channel: a router that routes the table (AdoptingTable) follows the
 * cutover and the switch from the notification alone, without a catalog
 * read in the write pause.
 */
export const ADOPTION_STATE_CHANNEL = 'reshard_adoption_state';

export interface AdoptionStateChange {
  migrationId: number;
  schema: string;
  name: string;
  state: AdoptionState;
  /** The cluster's epoch the change took: a reader keeps the newest of what it read and was told. */
  epoch: number;
  /**
   * Set on the announcement that the cutover is near (announceCutover; the
   * state itself unchanged): the staged sharded table's name on the nodes,
   * on which routers warm their node sessions before the pause.
   */
  stagedName?: string;
}

/** SQL (in a statement that updated reshard.adoption, its row as `row`, and bumped the epoch to `epoch`): the notification of the new state. */
function notifyStateSql(row: string, epoch: string): string {
  return `pg_notify('${ADOPTION_STATE_CHANNEL}', json_build_object('migrationId', ${row}.migration_id, 'schema', ${row}.schema_name, 'name', ${row}.table_name, 'state', ${row}.state, 'epoch', ${epoch})::text)`;
}

export async function listenForAdoptionStates(client: pg.ClientBase): Promise<void> {
  await client.query(`LISTEN ${ADOPTION_STATE_CHANNEL}`);
}

/** A notification's payload on ADOPTION_STATE_CHANNEL, or undefined if it is not one. */
export function parseAdoptionStateChange(payload: string | undefined): AdoptionStateChange | undefined {
  try {
    const parsed = JSON.parse(payload ?? '') as Partial<AdoptionStateChange>;
    if (typeof parsed.migrationId !== 'number' || typeof parsed.schema !== 'string' || typeof parsed.name !== 'string' || typeof parsed.state !== 'string'
      || typeof parsed.epoch !== 'number') return undefined;
    return { migrationId: parsed.migrationId, schema: parsed.schema, name: parsed.name, state: parsed.state as AdoptionState, epoch: parsed.epoch,
      ...(typeof parsed.stagedName === 'string' ? { stagedName: parsed.stagedName } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * Sets the adoption's state, bumps the epoch and notifies routers (which
 * route an adopting table by it; the new state in the payload on
 * ADOPTION_STATE_CHANNEL), one statement.
 */
export async function setAdoptionState(db: Queryable, migrationId: number, state: AdoptionState): Promise<void> {
  await db.query(
    `WITH changed AS (UPDATE reshard.adoption SET state = $2 WHERE migration_id = $1 AND state <> $2 RETURNING migration_id, schema_name, table_name, state),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM changed) RETURNING epoch)
     SELECT pg_notify('${SLOT_MAP_CHANNEL}', b.epoch::text), (SELECT ${notifyStateSql('c', 'b.epoch')} FROM changed c) FROM bumped b`,
    [migrationId, state],
  );
}

/**
 * Tells routers that the adoption's cutover is near (its state and the
 * epoch unchanged): the notification of its current state with the staged
 * table's name (`AdoptionStateChange.stagedName`). A router that routes the
 * table warms its node sessions on it then — the first statement of a
 * session on a table it has not touched (its lease, the leaves' relcache)
 * costs tens of ms that would otherwise fall into the write pause. Only a
 * hint: nothing waits for it.
 */
export async function announceCutover(db: Queryable, migrationId: number): Promise<void> {
  await db.query(
    `SELECT pg_notify('${ADOPTION_STATE_CHANNEL}', json_build_object('migrationId', a.migration_id, 'schema', a.schema_name, 'name', a.table_name, 'state', a.state,
            'epoch', c.epoch, 'stagedName', a.staged_name)::text)
       FROM reshard.adoption a, reshard.cluster c WHERE a.migration_id = $1 AND a.state = 'streaming' AND c.id = 1`,
    [migrationId],
  );
}

/** Registers the adopted table (state 'adopting'), its colocation group too; idempotent. */
export async function registerAdoptingTable(db: Queryable, table: { schema: string; name: string; keyColumn: string; keyType: ShardKeyType; colocationGroup: string; definition: string }): Promise<void> {
  await db.query('INSERT INTO reshard.colocation_group (name, key_types) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [table.colocationGroup, [table.keyType]]);
  await db.query(
    `INSERT INTO reshard.sharded_table (schema_name, table_name, shard_key, key_types, colocation_group, definition, state)
     VALUES ($1, $2, $3, $4, $5, $6, 'adopting') ON CONFLICT (schema_name, table_name) DO NOTHING`,
    [table.schema, table.name, [table.keyColumn], [table.keyType], table.colocationGroup, table.definition],
  );
}

/** Removes an adopting (or, for rollback, adopted) table from the catalog, and its colocation group if no other table uses it. */
export async function unregisterAdoptedTable(db: Queryable, table: { schema: string; name: string }): Promise<void> {
  const removed = await db.query<{ colocation_group: string }>(
    'DELETE FROM reshard.sharded_table WHERE schema_name = $1 AND table_name = $2 RETURNING colocation_group', [table.schema, table.name],
  );
  const group = removed.rows[0]?.colocation_group;
  if (group !== undefined) {
    await db.query('DELETE FROM reshard.colocation_group g WHERE g.name = $1 AND NOT EXISTS (SELECT 1 FROM reshard.sharded_table t WHERE t.colocation_group = g.name)', [group]);
  }
}

/**
 * The switch of an adoption, one statement (one catalog transaction): the
 * table active, the adoption switched, epoch + 1, NOTIFY. Idempotent.
 * `journal`: the switch step's begin, written in the same transaction.
 */
export async function switchAdoptedTable(db: Queryable, migrationId: number, journal?: JournalInStatement): Promise<number> {
  const result = await db.query<{ epoch: string }>(
    `WITH ${journal ? `${journal.ctes(2)},` : ''}
          adoption AS (UPDATE reshard.adoption SET state = 'switched', switched_at = now() WHERE migration_id = $1 AND state IN ('streaming', 'cutover')
                        RETURNING migration_id, schema_name, table_name, state),
          activated AS (UPDATE reshard.sharded_table t SET state = 'active' FROM adoption a WHERE t.schema_name = a.schema_name AND t.table_name = a.table_name RETURNING 1),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM adoption) RETURNING epoch),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', b.epoch::text), (SELECT ${notifyStateSql('a', 'b.epoch')} FROM adoption a) FROM bumped b)
     SELECT coalesce((SELECT epoch FROM bumped), (SELECT epoch FROM reshard.cluster WHERE id = 1))::text AS epoch,
            (SELECT count(*) FROM activated) AS activated, (SELECT count(*) FROM notified) AS notified`,
    journal ? [migrationId, journal.parameter] : [migrationId],
  );
  journal?.committed();
  return Number(result.rows[0]!.epoch);
}

export async function finishAdoptionMigration(db: Queryable, migrationId: number, state: 'completed' | 'failed' | 'rolled_back', error?: string): Promise<void> {
  await db.query('UPDATE reshard.migration SET state = $2, finished_at = now(), error = $3 WHERE id = $1', [migrationId, state, error ?? null]);
}

/** What a router needs to route an adopting table: its state and, for one source, how to reach it. */
export interface AdoptionRoute {
  state: AdoptionState | 'none';
  migrationId?: number;
  sources: AdoptionSource[];
  /** The cluster's epoch when this was read (same snapshot). */
  epoch: number;
}

export async function adoptionRoute(db: Queryable, table: { schema: string; name: string }): Promise<AdoptionRoute> {
  const result = await db.query<{ epoch: string } & Partial<AdoptionRow>>(
    `SELECT c.epoch::text AS epoch, x.* FROM reshard.cluster c LEFT JOIN LATERAL (
       SELECT ${ADOPTION_COLUMNS} FROM reshard.adoption a JOIN reshard.migration m ON m.id = a.migration_id
        WHERE a.schema_name = $1 AND a.table_name = $2 ORDER BY a.migration_id DESC LIMIT 1) x ON true
      WHERE c.id = 1`, [table.schema, table.name]);
  const row = result.rows[0];
  const epoch = Number(row?.epoch ?? 0);
  if (!row || row.migration_id === null || row.migration_id === undefined) return { state: 'none', sources: [], epoch };
  const adoption = adoptionFromRow(row as AdoptionRow);
  return { state: adoption.state, migrationId: adoption.migrationId, sources: adoption.sources, epoch };
}

export function adoptionNotFound(table: string): ReshardError {
  return new ReshardError('not_found', `no adoption of "${table}" is recorded`, 'start one with `reshard table adopt TABLE --from URL --key COLUMN`');
}

/** The definition and colocation group an adopting or adopted table was registered with, if it was. */
export async function registeredDefinition(db: Queryable, table: { schema: string; name: string }): Promise<{ definition: string; colocationGroup: string } | undefined> {
  const result = await db.query<{ definition: string; colocation_group: string }>(
    'SELECT definition, colocation_group FROM reshard.sharded_table WHERE schema_name = $1 AND table_name = $2', [table.schema, table.name],
  );
  const row = result.rows[0];
  return row ? { definition: row.definition, colocationGroup: row.colocation_group } : undefined;
}

/** Whether any sharded table (served or being adopted) has this name. */
export async function shardedTableNameTaken(db: Queryable, table: { schema: string; name: string }): Promise<boolean> {
  const result = await db.query('SELECT 1 FROM reshard.sharded_table WHERE schema_name = $1 AND table_name = $2', [table.schema, table.name]);
  return result.rows.length > 0;
}

/** Keeps the table's definition and colocation group with the migration until the prepare step registers the table. */
export async function storeAdoptionDefinition(db: Queryable, migrationId: number, definition: string, colocationGroup: string): Promise<void> {
  await db.query(`UPDATE reshard.migration SET plan = plan || jsonb_build_object('definition', $2::text, 'colocation_group', $3::text) WHERE id = $1`,
    [migrationId, definition, colocationGroup]);
}

export async function storedAdoptionDefinition(db: Queryable, migrationId: number): Promise<{ definition: string | undefined; colocationGroup: string | undefined }> {
  const result = await db.query<{ definition: string | null; colocation_group: string | null }>(
    "SELECT plan->>'definition' AS definition, plan->>'colocation_group' AS colocation_group FROM reshard.migration WHERE id = $1", [migrationId]);
  const row = result.rows[0];
  return { definition: row?.definition ?? undefined, colocationGroup: row?.colocation_group ?? undefined };
}

/** The adoption `resume` continues: the running adoption (interrupted), else the latest migration if it is a failed adoption. */
export async function resumableAdoptionId(db: Queryable): Promise<number | undefined> {
  const result = await db.query<{ id: string }>(
    `SELECT m.id::text FROM reshard.migration m WHERE m.mode = 'adopt'
        AND (m.state = 'running' OR (m.state = 'failed' AND m.id = (SELECT max(id) FROM reshard.migration))) ORDER BY m.id DESC LIMIT 1`,
  );
  return result.rows[0] ? Number(result.rows[0].id) : undefined;
}

/** `migrationId` (else the latest migration) if it is an adoption. */
export async function adoptionMigrationId(db: Queryable, migrationId?: number): Promise<number | undefined> {
  const result = await db.query<{ id: string }>(
    "SELECT id::text FROM reshard.migration WHERE mode = 'adopt' AND id = coalesce($1::bigint, (SELECT max(id) FROM reshard.migration))", [migrationId ?? null],
  );
  return result.rows[0] ? Number(result.rows[0].id) : undefined;
}

/** The rows the adoption's verification counted. */
export async function adoptedRowCount(db: Queryable, migrationId: number): Promise<number> {
  const result = await db.query<{ rows: string | null }>(
    `SELECT (detail->>'rows') AS rows FROM reshard.journal WHERE migration_id = $1 AND step = 'verify' AND action = 'done' ORDER BY id DESC LIMIT 1`, [migrationId]);
  return Number(result.rows[0]?.rows ?? 0);
}

/** Keeps a multi-source adoption's source rule (`--source-of`, SQL over the key) with its migration, for `reshard rollback`. */
export async function storeAdoptionSourceRule(db: Queryable, migrationId: number, ruleSql: string): Promise<void> {
  await db.query(`UPDATE reshard.migration SET plan = plan || jsonb_build_object('source_of', $2::text) WHERE id = $1`, [migrationId, ruleSql]);
}

export async function adoptionSourceRule(db: Queryable, migrationId: number): Promise<string | undefined> {
  const result = await db.query<{ rule: string | null }>("SELECT plan->>'source_of' AS rule FROM reshard.migration WHERE id = $1", [migrationId]);
  return result.rows[0]?.rule ?? undefined;
}

/**
 * An adoption not yet finished — copying, in its cutover, interrupted or
 * failed and waiting for `resume`, or being returned by a rollback — if any:
 * its nodes and slot owners are fixed at its start, so the node set must not
 * change under it.
 */
export async function unfinishedAdoption(db: Queryable): Promise<{ migrationId: number; schema: string; name: string } | undefined> {
  const result = await db.query<{ migration_id: string; schema_name: string; table_name: string }>(
    `SELECT a.migration_id::text, a.schema_name, a.table_name FROM reshard.adoption a JOIN reshard.migration m ON m.id = a.migration_id
      WHERE a.state IN ('streaming', 'cutover', 'returning') AND m.state IN ('running', 'failed') ORDER BY a.migration_id DESC LIMIT 1`);
  const row = result.rows[0];
  return row ? { migrationId: Number(row.migration_id), schema: row.schema_name, name: row.table_name } : undefined;
}
