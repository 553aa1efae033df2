import type pg from 'pg';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { listReferenceTables } from '../catalog/referenceTables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { slotWeight } from '../core/slotMap.js';
import { listShardedTables } from '../catalog/tables.js';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { type DatabaseIdentity } from '../core/databaseIdentity.js';
import { badInput, ReshardError } from '../core/errors.js';
import { SHARD_KEY_TYPES, shardKeyTypeFromPostgres, type ShardKeyType } from '../core/hash.js';
import { quoteIdent, quoteQualified } from '../core/identifier.js';
import { capacityOf, HEADROOM_FRACTION_DEFAULT } from '../coordinator/nodeSpaces.js';
import { readDatabaseIdentity, sameDatabase } from '../node/databaseIdentity.js';
import { measureNodeSpace } from '../node/diskSpace.js';
import { probeReplicationAccess, type ReplicationRefusal } from '../node/replicationAccess.js';
import { columnMaxima, describeTable, readWalLevel, relationExists, type TableDescription } from '../node/tableDescription.js';
import { movesCrossHeadroom, type NodeSpace } from '../planner/headroom.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import { connectTo } from '../plumbing/connectTo.js';
import type { Queryable } from '../plumbing/queryable.js';
import { SEQUENCE_BLOCK_VALUES } from '../core/sequenceBlock.js';

/** A server the table is adopted from: how to name it in a problem (never a password) and a session on it. */
export interface AdoptSource {
  label: string;
  db: Queryable;
  /** How to reach it: its replication access is probed when given (a sharded adoption reads its changes itself). */
  connection?: ConnectionSettings;
}

/** A node of the cluster as the preflight needs it: its share of the slots and its space. */
export interface AdoptClusterNode {
  name: string;
  /** Slots it owns now, a split slot counting its share of the hash space (½ per split): its share of the adopted rows is slots ÷ modulus. */
  slotsOwned: number;
  space: NodeSpace;
  /** Whether a relation of the table's name already exists there. */
  nameTaken: boolean;
  /** Whether this node's database is one of the sources (the table is already there). */
  isSource: boolean;
}

/** What the preflight knows of the cluster. */
export interface AdoptClusterView {
  modulus: number;
  nodes: AdoptClusterNode[];
  headroomFraction: number;
  /** Tables the catalog already has, sharded or reference, as `schema.name`. */
  tablesKnown: string[];
  /** The key types of the --colocate-with table, undefined when it is not a sharded table of the cluster. */
  colocateWithKeyTypes?: ShardKeyType[] | undefined;
}

export interface AdoptCheckInput {
  sources: AdoptSource[];
  schema: string;
  name: string;
  /** Shard key columns; empty for a reference table. */
  key: string[];
  reference?: boolean;
  colocateWith?: string | undefined;
  cluster: AdoptClusterView;
}

/**
 * Every reason the table cannot be adopted as asked, one ReshardError each
 * (its message names the problem, its fix what to do); an empty list when it
 * can. Reads only: nothing is changed on any source or node.
 */
export async function adoptProblems(input: AdoptCheckInput): Promise<ReshardError[]> {
  const facts = await Promise.all(input.sources.map(async (source) => {
    const table = await describeTable(source.db, input.schema, input.name);
    // Keys already in the nodes' blocks (≥ 2^48) could meet a node's new ones: read the largest of each bigint column a sequence feeds.
    const fed = input.reference || table?.kind !== 'r' ? [] : table.sequences
      .filter((feed) => table.columns.find((column) => column.name === feed.column)?.type === 'bigint').map((feed) => feed.column);
    const walLevel = await readWalLevel(source.db);
    // Below logical, the restart that fixes it comes first; a reference table is not read over a replication connection.
    const replication = walLevel === 'logical' && !input.reference && source.connection ? await probeReplicationAccess(source.connection, source.db) : undefined;
    return { source, table, walLevel, replication, sequenceColumnMaxima: await columnMaxima(source.db, input.schema, input.name, [...new Set(fed)]) };
  }));
  return problemsOf(input, facts);
}

interface SourceFacts {
  source: AdoptSource;
  table: TableDescription | undefined;
  walLevel: string;
  /** Why the source refuses reshard's replication connection (accepted, or not probed: undefined). */
  replication?: ReplicationRefusal | undefined;
  /** The largest value of each bigint column a sequence feeds (read only for a plain table adopted as sharded). */
  sequenceColumnMaxima?: ReadonlyMap<string, bigint | undefined>;
}

/** The problems of the facts read (pure). */
export function problemsOf(input: AdoptCheckInput, facts: readonly SourceFacts[]): ReshardError[] {
  const problems: ReshardError[] = [];
  const table = input.schema === 'public' ? input.name : `${input.schema}.${input.name}`;
  const tableSql = input.schema === 'public' ? quoteIdent(input.name) : quoteQualified(input.schema, input.name);
  const several = facts.length > 1;
  const on = (source: AdoptSource): string => several ? ` on ${source.label}` : '';
  const reference = input.reference === true;
  if (reference && input.key.length > 0) problems.push(badInput('a reference table has no shard key', 'drop --key (or --reference to shard it)'));
  if (!reference && input.key.length === 0) problems.push(badInput('no shard key was given', 'pass --key <column>'));
  if (reference && several) problems.push(badInput(`a reference table is adopted from one server, not ${facts.length}`, 'pass one URL to --from'));

  for (const { source, table: described, walLevel, replication, sequenceColumnMaxima } of facts) {
    if (walLevel !== 'logical') {
      problems.push(new ReshardError('precondition', `wal_level is ${walLevel} on ${source.label}: adoption streams the table's changes by logical replication`,
        `run ALTER SYSTEM SET wal_level = logical; on ${source.label} and restart that server`));
    }
    if (replication && source.connection) problems.push(replicationProblem(source.label, source.connection.user, replication));
    if (!described) {
      problems.push(new ReshardError('not_found', `table ${table} does not exist on ${source.label}`, 'check the table name and --schema, and that --from is the database that holds it'));
      continue;
    }
    if (described.kind !== 'r') {
      problems.push(new ReshardError('unsupported', `${table}${on(source)} is ${KIND_NAMES[described.kind] ?? `a relation of kind ${described.kind}`}, not a plain table`, 'adopt an ordinary table (CREATE TABLE … without PARTITION BY)'));
      continue;
    }
    const primaryKey = described.uniques.find((unique) => unique.kind === 'primary key');
    if (!primaryKey) {
      const suggested = input.key.length > 0 ? input.key.map(quoteIdent).join(', ') : '…';
      problems.push(new ReshardError('precondition', `${table}${on(source)} has no primary key: logical replication needs one to carry UPDATE and DELETE`,
        `ALTER TABLE ${tableSql} ADD PRIMARY KEY (${suggested})${reference ? '' : ' (it must include the shard key)'}`));
    }
    if (!reference) problems.push(...keyProblems(input, described, tableSql, on(source)));
    problems.push(...foreignKeyProblems(input, described, 'out', on(source)));
    // An adopted reference table stays whole where it is, on its holder, so a key into it still holds there; its copies elsewhere are read-only.
    if (!reference) problems.push(...foreignKeyProblems(input, described, 'in', on(source)));
    if (!reference) problems.push(...sequenceProblems(described, tableSql, on(source), sequenceColumnMaxima ?? new Map()));
  }

  if (several) problems.push(...shapeProblems(facts, table));
  problems.push(...clusterProblems(input, facts, table));
  return problems;
}

/** A source refusing reshard's replication connection, with what fixes it. */
function replicationProblem(label: string, user: string, refusal: ReplicationRefusal): ReshardError {
  const message = `${label} cannot give reshard a replication connection and slot (${refusal.reason}): adoption creates its slot and reads the table's changes over one`;
  switch (refusal.kind) {
    case 'privilege':
      return new ReshardError('precondition', message, `run ALTER ROLE ${quoteIdent(user)} REPLICATION; on ${label}, or adopt as a user that has it`);
    case 'capacity':
      return new ReshardError('precondition', message,
        `free a WAL sender and a replication slot on ${label} (drop an unused slot with SELECT pg_drop_replication_slot(…)), or raise max_wal_senders / max_replication_slots and restart it`);
    case 'other':
      return new ReshardError('precondition', message, `check ${label}'s server log and that this address may open replication connections`);
  }
}

const KIND_NAMES: Record<string, string> = {
  p: 'a partitioned table', v: 'a view', m: 'a materialized view', f: 'a foreign table', S: 'a sequence', i: 'an index', c: 'a composite type',
};

function keyProblems(input: AdoptCheckInput, described: TableDescription, tableSql: string, on: string): ReshardError[] {
  const problems: ReshardError[] = [];
  const table = describedName(described);
  const columns = new Map(described.columns.map((column) => [column.name, column]));
  for (const key of input.key) {
    const column = columns.get(key);
    if (!column) {
      problems.push(badInput(`${table}${on} has no column "${key}" to shard by`, `pass --key with one of its columns: ${described.columns.map((entry) => entry.name).join(', ')}`));
      continue;
    }
    const type = shardKeyTypeFromPostgres(column.type);
    if (!type) {
      problems.push(new ReshardError('unsupported', `shard key column "${key}" of ${table}${on} is ${column.type}; reshard routes ${SHARD_KEY_TYPES.join(', ')} keys exactly as PostgreSQL hashes them`,
        `ALTER TABLE ${tableSql} ALTER COLUMN ${quoteIdent(key)} TYPE ${suggestedKeyType(column.type)} before adopting, or pass another --key`));
    } else if (type === 'text' && !column.collationDeterministic) {
      problems.push(new ReshardError('unsupported', `shard key column "${key}" of ${table}${on} has the nondeterministic collation ${column.collation ?? ''}: its hash is not the bytes' hash reshard computes`,
        `ALTER TABLE ${tableSql} ALTER COLUMN ${quoteIdent(key)} TYPE text COLLATE "C" before adopting, or pass another --key`));
    }
  }
  const keyColumns = input.key.filter((key) => columns.has(key));
  if (keyColumns.length !== input.key.length) return problems;
  for (const unique of described.uniques) {
    const missing = keyColumns.filter((key) => !unique.columns.includes(key));
    if (missing.length === 0) continue;
    const keyList = input.key.map(quoteIdent).join(', ');
    if (unique.kind === 'primary key') {
      problems.push(new ReshardError('precondition', `the primary key of ${table}${on} (${unique.columns.join(', ')}) does not include the shard key (${input.key.join(', ')}): each node can enforce it only within its own slots`,
        `pass --key with primary key columns (${unique.columns.join(', ')}), or make it include the key: ALTER TABLE ${tableSql} DROP CONSTRAINT ${quoteIdent(unique.name)}, ADD PRIMARY KEY (${uniqueWithKey(unique.columns, input.key)})`));
    } else {
      const drop = unique.kind === 'unique constraint' ? `ALTER TABLE ${tableSql} DROP CONSTRAINT ${quoteIdent(unique.name)}` : `DROP INDEX ${quoteQualified(described.schema, unique.name)}`;
      problems.push(new ReshardError('precondition', `${unique.kind} ${unique.name} of ${table}${on} (${unique.columns.join(', ') || 'an expression'}) does not include the shard key (${input.key.join(', ')}): nodes cannot enforce it across slots`,
        `drop it (${drop}), or replace it by one that includes the key (${keyList})`));
    }
  }
  return problems;
}

function uniqueWithKey(columns: readonly string[], key: readonly string[]): string {
  return [...key, ...columns.filter((column) => !key.includes(column))].map(quoteIdent).join(', ');
}

function suggestedKeyType(type: string): string {
  if (/^(smallint|integer|bigint|numeric(\(\d+(,\s*0)?\))?)$/.test(type)) return 'bigint';
  return 'text';
}

function describedName(described: Pick<TableDescription, 'schema' | 'name'>): string {
  return described.schema === 'public' ? described.name : `${described.schema}.${described.name}`;
}

function foreignKeyProblems(input: AdoptCheckInput, described: TableDescription, direction: 'in' | 'out', on: string): ReshardError[] {
  const table = describedName(described);
  const keys = direction === 'out' ? described.foreignKeysOut : described.foreignKeysIn;
  return keys.map((key) => {
    const shown = `foreign key ${key.name} (${key.fromTable.replace(/^public\./, '')} (${key.fromColumns.join(', ')}) → ${key.toTable.replace(/^public\./, '')} (${key.toColumns.join(', ')}))`;
    const [holderSchema, ...holderName] = key.fromTable.split('.');
    const drop = `ALTER TABLE ${quoteQualified(holderSchema!, holderName.join('.'))} DROP CONSTRAINT ${quoteIdent(key.name)}`;
    if (direction === 'out') {
      const referenced = key.toTable.replace(/^public\./, '');
      const then = input.reference
        ? `; adopt ${referenced} first (\`reshard table adopt ${referenced} --reference --from …\`) so every copy finds the rows it references`
        : `; then adopt ${referenced} as a reference table (\`reshard table adopt ${referenced} --reference --from …\`) so joins stay local on every node` +
          (sameColumns(key.fromColumns, input.key) ? `, or, since it is keyed by the shard key, adopt it with --key ${key.toColumns.join(',')} and ${table} with --colocate-with ${referenced}` : '');
      return new ReshardError('precondition', `${table}${on} holds ${shown}: reshard does not keep foreign keys across nodes`, `drop it (${drop}) before adopting${then}`);
    }
    const referencing = key.fromTable.replace(/^public\./, '');
    const colocate = sameColumns(key.toColumns, input.key)
      ? `; then adopt ${referencing} with --key ${key.fromColumns.join(',')} --colocate-with ${table}, so its rows sit on their ${table} row's node`
      : '';
    return new ReshardError('precondition', `${referencing}${on} holds ${shown} into ${table}: reshard does not keep foreign keys across nodes`, `drop it (${drop}) before adopting${colocate}`);
  });
}

function sameColumns(left: readonly string[], right: readonly string[]): boolean {
  return left.length > 0 && left.length === right.length && left.every((column, index) => column === right[index]);
}

/** Sequence-fed columns get per-node blocks of bigint (README "Keys from sequences"): smaller types cannot be split. */
function sequenceProblems(described: TableDescription, tableSql: string, on: string, maxima: ReadonlyMap<string, bigint | undefined>): ReshardError[] {
  const table = describedName(described);
  const problems: ReshardError[] = [];
  for (const feed of described.sequences) {
    const column = described.columns.find((entry) => entry.name === feed.column);
    if (column && column.type !== 'bigint') {
      problems.push(new ReshardError('unsupported', `column "${feed.column}" of ${table}${on} is ${column.type} fed by sequence ${feed.sequence}: every node draws its own block of 2^48 values, which only bigint holds`,
        `ALTER TABLE ${tableSql} ALTER COLUMN ${quoteIdent(feed.column)} TYPE bigint; ALTER SEQUENCE ${feed.sequence} AS bigint; before adopting`));
    } else if (feed.sequenceType !== 'bigint') {
      problems.push(new ReshardError('unsupported', `sequence ${feed.sequence} of ${table}${on} is ${feed.sequenceType}: every node draws its own block of 2^48 values, which only bigint holds`,
        `ALTER SEQUENCE ${feed.sequence} AS bigint; before adopting`));
    }
    if (feed.lastValue !== undefined && feed.lastValue >= SEQUENCE_BLOCK_VALUES) {
      problems.push(new ReshardError('unsupported', `sequence ${feed.sequence} of ${table}${on} is at ${feed.lastValue}, inside the blocks reshard gives the nodes (from 2^48 = ${SEQUENCE_BLOCK_VALUES} up)`,
        `keep the column's values below 2^48, or give it values some other way (a uuid key)`));
    }
  }
  for (const [column, max] of maxima) {
    if (max !== undefined && max >= SEQUENCE_BLOCK_VALUES) {
      problems.push(new ReshardError('unsupported', `column "${column}" of ${table}${on} holds ${max}, inside the blocks reshard gives the nodes' sequences (from 2^48 = ${SEQUENCE_BLOCK_VALUES} up): a node could draw it again`,
        `keep the column's values below 2^48 (renumber those rows), or give it values some other way (a uuid key)`));
    }
  }
  return problems;
}

/** Several sources hold parts of one table: their columns must be the same, in the same order and of the same types. */
function shapeProblems(facts: readonly SourceFacts[], table: string): ReshardError[] {
  const present = facts.filter((entry) => entry.table?.kind === 'r');
  const first = present[0];
  if (!first) return [];
  const problems: ReshardError[] = [];
  const expected = first.table!.columns;
  for (const other of present.slice(1)) {
    const columns = other.table!.columns;
    const differences: string[] = [];
    const byName = new Map(columns.map((column) => [column.name, column]));
    for (const column of expected) {
      const match = byName.get(column.name);
      if (!match) differences.push(`no column ${column.name}`);
      else if (match.type !== column.type) differences.push(`${column.name} is ${match.type}, not ${column.type}`);
    }
    const expectedNames = new Set(expected.map((column) => column.name));
    for (const column of columns) if (!expectedNames.has(column.name)) differences.push(`an extra column ${column.name} ${column.type}`);
    if (differences.length === 0 && columns.map((column) => column.name).join(',') !== expected.map((column) => column.name).join(',')) {
      differences.push(`the columns are in another order (${columns.map((column) => column.name).join(', ')})`);
    }
    if (differences.length > 0) {
      problems.push(new ReshardError('precondition', `${table} differs between ${first.source.label} and ${other.source.label}: on ${other.source.label} ${differences.join('; ')}`,
        `make the table alike on every source (ALTER TABLE …), then adopt`));
    }
  }
  return problems;
}

function clusterProblems(input: AdoptCheckInput, facts: readonly SourceFacts[], table: string): ReshardError[] {
  const problems: ReshardError[] = [];
  const cluster = input.cluster;
  if (cluster.tablesKnown.includes(`${input.schema}.${input.name}`)) {
    problems.push(new ReshardError('conflict', `the cluster already has a table named ${table}`, 'adopt it under another name (rename it on the source first), or drop the cluster\'s table'));
  }
  for (const node of cluster.nodes) {
    if (node.nameTaken && !node.isSource) {
      problems.push(new ReshardError('conflict', `node ${node.name} already has a relation named ${table}`, `drop or rename it on ${node.name}, or rename the table on the source before adopting`));
    }
  }
  if (input.reference && facts.length === 1 && !cluster.nodes.some((node) => node.isSource)) {
    problems.push(new ReshardError('precondition', `${facts[0]!.source.label} is not a node of the cluster: an adopted reference table stays where it is, as its holder`,
      'add that server as a node (`reshard node add NAME --url …`) first, or copy the table into a node (pg_dump -t … | psql) and adopt it from there'));
  }
  if (input.colocateWith !== undefined) {
    if (input.reference) {
      problems.push(badInput('a reference table is on every node: it has no colocation', 'drop --colocate-with'));
    } else if (cluster.colocateWithKeyTypes === undefined) {
      problems.push(new ReshardError('not_found', `--colocate-with ${input.colocateWith} is not a sharded table of the cluster`, 'name a table from `reshard table list`, or drop --colocate-with'));
    } else {
      const keyTypes = facts[0]?.table?.columns
        .filter((column) => input.key.includes(column.name))
        .sort((left, right) => input.key.indexOf(left.name) - input.key.indexOf(right.name))
        .map((column) => shardKeyTypeFromPostgres(column.type));
      if (keyTypes && keyTypes.length === input.key.length && keyTypes.every((type) => type !== undefined) && keyTypes.join(',') !== cluster.colocateWithKeyTypes.join(',')) {
        problems.push(badInput(`the shard key of ${table} is (${keyTypes.join(', ')}) but ${input.colocateWith} is keyed by (${cluster.colocateWithKeyTypes.join(', ')})`,
          'colocate only tables whose keys have the same types, or drop --colocate-with'));
      }
    }
  }
  const bytes = facts.reduce((sum, entry) => sum + (entry.table?.totalBytes ?? 0), 0);
  if (bytes > 0 && cluster.modulus > 0) {
    for (const node of cluster.nodes) {
      // A reference table lands whole on every node but its holder; a sharded one, each node's share of the slots.
      const incoming = input.reference ? (node.isSource ? 0 : bytes) : Math.ceil(bytes * node.slotsOwned / cluster.modulus);
      if (incoming === 0) continue;
      const problem = movesCrossHeadroom(`adopting ${table}`, incoming, node.space, cluster.headroomFraction);
      if (problem) {
        problems.push(new ReshardError('precondition', problem,
          `free space on ${node.name}, give it a larger --capacity (\`reshard node set ${node.name} --capacity …\`), add nodes first, or lower --headroom`));
      }
    }
  }
  return problems;
}

export interface AdoptCheckRequest {
  schema?: string;
  name: string;
  /** The servers that hold the table (one, or several for an application-sharded table). */
  from: ConnectionSettings[];
  key: string[];
  reference?: boolean;
  colocateWith?: string;
  headroomFraction?: number;
}

export interface AdoptCheckReport {
  table: string;
  problems: ReshardError[];
  /** Which node each source is, when it is one of the cluster's (by database identity), else undefined. */
  sourceNodes: (string | undefined)[];
  /** The table's size summed over the sources. */
  bytes: number;
}

/**
 * `reshard table adopt-check`: reads the catalog, every node and every
 * source, and returns every problem (empty: adoptable). Changes nothing.
 */
export async function checkAdoption(access: ClusterAccess, request: AdoptCheckRequest): Promise<AdoptCheckReport> {
  const schema = request.schema ?? 'public';
  if (request.from.length === 0) throw badInput('no source server was given', 'pass --from postgres://user@host:port/db[,…]');
  const headroomFraction = request.headroomFraction ?? HEADROOM_FRACTION_DEFAULT;
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    const slotMap = await readSlotMap(catalog);
    const sharded = await listShardedTables(catalog);
    const tablesKnown = [...sharded, ...await listReferenceTables(catalog)].map((table) => `${table.schema}.${table.name}`);
    const colocateWith = request.colocateWith === undefined ? undefined : sharded.find((table) => table.schema === schema && table.name === request.colocateWith);
    const sources: { label: string; connection: ConnectionSettings; client: pg.Client }[] = [];
    const nodeClients: { node: NodeRecord; client: pg.Client }[] = [];
    try {
      for (const connection of request.from) {
        const label = describeConnection(connection);
        sources.push({ label, connection, client: await connectTo({ role: `source ${label}`, connection }, 'reshard adopt-check') });
      }
      for (const node of nodes) nodeClients.push({ node, client: await connectNode(node, access.passwords, 'reshard adopt-check') });
      const sourceIdentities: DatabaseIdentity[] = [];
      for (const source of sources) sourceIdentities.push(await readDatabaseIdentity(source.client, `source ${source.label}`));
      const sourceNodes: (string | undefined)[] = sourceIdentities.map(() => undefined);
      const clusterNodes: AdoptClusterNode[] = [];
      for (const { node, client } of nodeClients) {
        const identity = await readDatabaseIdentity(client, `node ${node.name}`);
        const sourceIndex = sourceIdentities.findIndex((candidate) => sameDatabase(candidate, identity));
        if (sourceIndex >= 0) sourceNodes[sourceIndex] = node.name;
        const measured = await measureNodeSpace(client, node.connection.host);
        clusterNodes.push({
          name: node.name,
          slotsOwned: slotMap.owners.reduce((sum, owner, slot) => (owner === node.name ? sum + slotWeight(slotMap, slot) : sum), 0),
          space: { name: node.name, usedBytes: measured.usedBytes, capacityBytes: capacityOf(node, measured) },
          nameTaken: await relationExists(client, schema, request.name),
          isSource: sourceIndex >= 0,
        });
      }
      const input: AdoptCheckInput = {
        sources: sources.map((source) => ({ label: source.label, connection: source.connection, db: source.client })),
        schema,
        name: request.name,
        key: request.key,
        ...(request.reference ? { reference: true } : {}),
        colocateWith: request.colocateWith,
        cluster: { modulus: slotMap.modulus, nodes: clusterNodes, headroomFraction, tablesKnown, colocateWithKeyTypes: colocateWith?.keyTypes },
      };
      const problems = await adoptProblems(input);
      let bytes = 0;
      for (const source of sources) bytes += (await describeTable(source.client, schema, request.name))?.totalBytes ?? 0;
      return { table: schema === 'public' ? request.name : `${schema}.${request.name}`, problems, sourceNodes, bytes };
    } finally {
      await Promise.all([...sources, ...nodeClients].map(({ client }) => client.end().catch(() => {})));
    }
  });
}
