import {
  adoptedRowCount, createAdoption, finishAdoptionMigration, resumableAdoptionId, setAdoptionState, shardedTableNameTaken, storeAdoptionDefinition, storeAdoptionSourceRule,
} from '../catalog/adoptions.js';
import { getCluster } from '../catalog/cluster.js';
import { getMigration, reopenMigration } from '../catalog/migrationRuns.js';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { colocationGroupKeyTypes, getShardedTable } from '../catalog/tables.js';
import { adoptNames } from '../core/adoptNames.js';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { badInput, errorText, ReshardError } from '../core/errors.js';
import { assertIdentifierFits } from '../core/identifier.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectTo } from '../plumbing/connectTo.js';
import { parseConnectionHere } from '../plumbing/conninfoSources.js';
import { sameDatabase, readDatabaseIdentity } from '../node/databaseIdentity.js';
import { describeSourceTable, firstKeyAgainstSourceRule } from '../node/adoptSource.js';
import type { Queryable } from '../plumbing/queryable.js';
import { leafName } from '../node/leafName.js';
import type { AdoptLimits } from '../mover/adoptContext.js';
import { unsplitOwners, withAdoptContext } from './adoptSession.js';
import { AdoptionRefused } from './adoptionRefused.js';
import { checkAdoption } from './adoptPreflight.js';
import { ADOPT_JOURNAL_UNIT, ADOPT_STEPS } from '../mover/adoptSteps.js';
import { MoveRolledBack } from '../mover/moveRolledBack.js';
import { catalogStepJournal } from '../mover/stepJournal.js';
import { StepRunner, type StepEvent } from '../mover/stepRunner.js';

export interface AdoptRequest {
  schema?: string;
  name: string;
  /** Connection strings of the servers holding the table (postgres:// URLs or key=value). */
  from: readonly string[];
  keyColumn: string;
  colocateWith?: string;
  /**
   * Several sources: where a key belongs, as a SQL expression over the key
   * column giving the source's position in `from` (0-based), e.g. `id % 3`
   * — the application's own scheme. Checked against rows of every source
   * before anything changes; `reshard rollback` sends a key first written
   * after the switch to the source it names (without it: the first source).
   */
  sourceOf?: string;
  /** Share of each node's capacity that must stay free after the adoption (the headroom rule). */
  headroomFraction?: number;
  limits?: Partial<AdoptLimits>;
  emit?: (event: StepEvent) => void;
}

export interface AdoptResult {
  migrationId: number;
  table: string;
  sources: string[];
  rows: number;
  keptName: string;
}

/**
 * `reshard table adopt`: turns an existing plain table on one or more
 * servers into a sharded table over the cluster's slot map, online (see
 * `mover/adoptSteps.ts` for the steps). Runs as a migration of its own kind:
 * one at a time with rebalances, journaled, resumable with `reshard resume`,
 * taken back with `reshard rollback` until `table forget-source`.
 */
export async function adoptTable(access: ClusterAccess, request: AdoptRequest): Promise<AdoptResult> {
  const schema = request.schema ?? 'public';
  assertIdentifierFits(request.name, 'table name');
  if (request.from.length === 0) throw badInput('no source was given', 'pass --from URL (several: --from URL1,URL2)');
  if (request.keyColumn.trim() === '') throw badInput('no shard key was given', 'pass --key COLUMN');
  const sources = request.from.map((text, index) => parseConnectionHere(text, `--from (source ${index + 1})`));
  // Every up-front refusal (keys, constraints, foreign keys, key types, wal_level, free space), one line each, before anything changes.
  const preflight = await checkAdoption(access, {
    schema, name: request.name, from: sources, key: [request.keyColumn.trim()],
    ...(request.colocateWith !== undefined ? { colocateWith: request.colocateWith } : {}),
    ...(request.headroomFraction !== undefined ? { headroomFraction: request.headroomFraction } : {}),
  });
  if (preflight.problems.length > 0) throw new AdoptionRefused(preflight.table, preflight.problems);
  const catalog = await connectCatalog(access, 'reshard adopt');
  let migrationId: number;
  try {
    await assertCatalogCurrent(catalog);
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    if (nodes.length === 0) throw new ReshardError('precondition', 'the cluster has no nodes', 'add them with `reshard node add` first');
    const { modulus, epoch } = await getCluster(catalog);
    unsplitOwners(await readSlotMap(catalog));
    leafName(request.name, modulus - 1, modulus);
    if (await shardedTableNameTaken(catalog, { schema, name: request.name })) {
      throw new ReshardError('conflict', `a sharded table named "${request.name}" already exists (or is being adopted)`, 'adopt into another name, or `reshard rollback` the earlier adoption');
    }
    const located = await locateSources(sources, nodes);
    const sourceOf = request.sourceOf?.trim();
    if (sourceOf !== undefined && sources.length < 2) throw badInput('--source-of tells which of several sources a key belongs to, and there is one', 'drop --source-of');
    const shapes = [];
    for (const [index, source] of sources.entries()) {
      const client = await connectTo({ role: `source ${located[index]!.name}`, connection: source }, 'reshard adopt');
      try {
        shapes.push(await describeSourceTable(client, schema, request.name, request.keyColumn));
        if (sourceOf !== undefined) await checkSourceRule(client, { schema, name: request.name, keyColumn: request.keyColumn }, sourceOf, index, located[index]!.name);
      } finally {
        await client.end().catch(() => {});
      }
    }
    const first = shapes[0]!;
    for (const [index, shape] of shapes.entries()) {
      if (shape.definition !== first.definition) {
        throw badInput(`${request.name} on ${located[index]!.name} has other columns than on ${located[0]!.name}`, 'give the table the same columns and primary key on every source');
      }
    }
    const colocationGroup = request.colocateWith ? (await getShardedTable(catalog, schema, request.colocateWith)).colocationGroup : request.name;
    const groupTypes = await colocationGroupKeyTypes(catalog, colocationGroup);
    if (groupTypes && groupTypes.join(',') !== first.keyType) {
      throw badInput(`the key of "${request.name}" is ${first.keyType} but its colocation group "${colocationGroup}" uses (${groupTypes.join(', ')})`, 'use a key of the same type, or do not colocate');
    }
    migrationId = await createAdoption(catalog, {
      schema, name: request.name, keyColumn: request.keyColumn, keyType: first.keyType,
      sources: located.map((source) => ({ connection: source.connection, ...(source.node !== undefined ? { node: source.node } : {}) })),
    }, (id) => adoptNames(request.name, id), epoch);
    // Kept with the migration: a resume needs the definition even after a node source's table was renamed.
    await storeAdoptionDefinition(catalog, migrationId, first.definition, colocationGroup);
    if (sourceOf !== undefined) await storeAdoptionSourceRule(catalog, migrationId, sourceOf);
  } finally {
    await catalog.end().catch(() => {});
  }
  const passwords = new Map(sources.map((source, index) => [index, source.password]));
  return runAdoption(access, migrationId, passwords, request);
}

/** How many of a source's rows the source rule is checked against. */
const SOURCE_RULE_SAMPLE_ROWS = 10_000;

/** Refuses a source rule that is not SQL over the key, or that places a row of this source elsewhere. */
async function checkSourceRule(db: Queryable, table: { schema: string; name: string; keyColumn: string }, ruleSql: string, position: number, sourceName: string): Promise<void> {
  let misplaced;
  try {
    misplaced = await firstKeyAgainstSourceRule(db, table, ruleSql, position, SOURCE_RULE_SAMPLE_ROWS);
  } catch (error) {
    throw badInput(`--source-of "${ruleSql}" is not a SQL expression over ${table.keyColumn} alone giving a whole number: ${(error as Error).message}`,
      `write the application's scheme over the key, e.g. --source-of "${table.keyColumn} % 3"`);
  }
  if (misplaced) {
    throw badInput(`--source-of "${ruleSql}" gives ${misplaced.position ?? 'NULL'} for key ${misplaced.key}, which source ${position} (${sourceName}) holds`,
      'give the rule the position of each key\'s source in --from, counted from 0 (the order of --from matters)');
  }
}

interface LocatedSource { connection: ConnectionSettings; node?: string; name: string }

/** Which sources are nodes of the cluster (same database, whatever address reached it). */
async function locateSources(sources: readonly ConnectionSettings[], nodes: readonly NodeRecord[]): Promise<LocatedSource[]> {
  const located: LocatedSource[] = [];
  for (const [index, connection] of sources.entries()) {
    const client = await connectTo({ role: `source ${index + 1} (${describeConnection(connection)})`, connection }, 'reshard adopt');
    try {
      const identity = await readDatabaseIdentity(client, `source ${index + 1}`);
      const node = nodes.find((candidate) => candidate.identity !== undefined && sameDatabase(candidate.identity, identity));
      if (located.some((other) => other.connection.host === connection.host && other.connection.port === connection.port && other.connection.database === connection.database)) {
        throw badInput(`source ${describeConnection(connection)} is given twice`, 'name each source once in --from');
      }
      located.push({ connection, ...(node ? { node: node.name } : {}), name: node ? `node ${node.name}` : describeConnection(connection) });
    } finally {
      await client.end().catch(() => {});
    }
  }
  return located;
}

/** `reshard resume` for an interrupted adoption. */
export async function resumeAdoption(access: ClusterAccess, migrationId: number, emit?: (event: StepEvent) => void): Promise<AdoptResult> {
  const catalog = await connectCatalog(access, 'reshard adopt');
  try {
    if ((await getMigration(catalog, migrationId)).state === 'failed') await reopenMigration(catalog, migrationId);
  } finally {
    await catalog.end().catch(() => {});
  }
  return runAdoption(access, migrationId, new Map(), { ...(emit ? { emit } : {}) });
}

/** Runs the recorded adoption's steps; a failure before the switch undoes it all. */
async function runAdoption(access: ClusterAccess, migrationId: number, sourcePasswords: Map<number, string | undefined>, request: Pick<AdoptRequest, 'limits' | 'emit'>): Promise<AdoptResult> {
  return withAdoptContext(access, migrationId, sourcePasswords, request, async (context, catalog) => {
    const { adoption } = context;
    const journal = catalogStepJournal(catalog, migrationId);
    const runner = await StepRunner.open(journal, [ADOPT_JOURNAL_UNIT], context.emit);
    try {
      await runner.run(ADOPT_STEPS, context, [ADOPT_JOURNAL_UNIT], { rollBackOnFailure: true });
    } catch (error) {
      if (error instanceof MoveRolledBack) {
        await setAdoptionState(catalog, migrationId, 'rolled_back');
        await finishAdoptionMigration(catalog, migrationId, 'rolled_back', errorText(error.reason));
        throw error.reason;
      }
      await finishAdoptionMigration(catalog, migrationId, 'failed', errorText(error)).catch(() => {});
      throw error;
    }
    await finishAdoptionMigration(catalog, migrationId, 'completed');
    return {
      migrationId, table: adoption.name, sources: adoption.sources.map((_, index) => context.sourceName(index)),
      rows: await adoptedRowCount(catalog, migrationId), keptName: adoption.keptName,
    };
  });
}

/** The adoption `reshard resume` would continue, if the migration waiting for it is one. */
export async function adoptionToResume(access: ClusterAccess): Promise<number | undefined> {
  const catalog = await connectCatalog(access, 'reshard resume');
  try {
    await assertCatalogCurrent(catalog);
    return await resumableAdoptionId(catalog);
  } finally {
    await catalog.end().catch(() => {});
  }
}

/** What `table adopt --dry-run` prints: each step of an adoption, in order, as the journal will name it. Nothing is read or changed. */
export function describeAdoptSteps(table: string): { step: string; description: string }[] {
  return ADOPT_STEPS.map((step) => ({ step: step.name, description: step.describe({ slot: 0, modulus: 1, sourceName: 'source', targetName: 'owners', tables: [{ schema: 'public', name: table, shardKey: [] }] }) }));
}
