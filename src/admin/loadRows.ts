import { Transform, type Readable, type Writable } from 'node:stream';
import { slotLookup, slotOfKeyByLookup } from '../core/slotMap.js';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { parse as parseCsv } from 'csv-parse';
import type pg from 'pg';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { runningMigration } from '../catalog/migrationRuns.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { describeTable, getShardedTable, type ShardedTableRecord } from '../catalog/tables.js';
import { copyTextFields, decodeCopyTextField } from '../core/copyText.js';
import { ReshardError, badInput } from '../core/errors.js';
import { slotOfKey, type ShardKeyValue } from '../core/hash.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { queryTimeoutMs } from '../plumbing/connectTo.js';
import { copyRowsIn, tableColumns, type CopyInputFormat } from '../node/copyRowsIn.js';
import { connectNode } from '../plumbing/connectNode.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';

export interface LoadRequest {
  /** `name` or `schema.name` of a sharded table. */
  table: string;
  input: Readable;
  format: CopyInputFormat;
  /** CSV only: the first line names the columns. */
  header: boolean;
  /** The columns each line holds, in order; default: the header (CSV), else the table's columns. */
  columns?: readonly string[];
  /** Called with the running totals as lines are routed. */
  onProgress?: (progress: LoadProgress) => void;
}

export interface LoadProgress {
  rows: number;
  bytesRead: number;
}

export interface LoadResult {
  table: string;
  rows: number;
  rowsByNode: Record<string, number>;
  epoch: number;
}

/** One node's share of the load: an open transaction with a COPY in progress. */
interface NodeSink {
  node: NodeRecord;
  client: pg.Client;
  copy: Writable & { rowCount?: number };
  rows: number;
}

/**
 * Loads rows in COPY format (text or CSV) into a sharded table, each row sent
 * to the owner of its slot. Every node's share is one transaction, committed
 * only when every node has taken its rows and the slot map is still the one
 * the rows were routed by; otherwise nothing is committed anywhere. Refused
 * while a migration runs: the slot map may change under it.
 */
export async function loadRows(access: ClusterAccess, request: LoadRequest): Promise<LoadResult> {
  const { schema, name } = splitTableName(request.table);
  const routing = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const table = await getShardedTable(catalog, schema, name);
    await assertNoMigration(catalog);
    return { table, slotMap: await readSlotMap(catalog), nodes: new Map((await listNodes(catalog)).map((node) => [node.name, node])) };
  });
  const { table, slotMap, nodes } = routing;
  const lookup = slotLookup(slotMap);
  const sinks = new Map<string, NodeSink>();
  let rows = 0;
  let bytesRead = 0;
  const counted = request.input.pipe(new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytesRead += chunk.length;
      callback(null, chunk);
    },
  }));

  const sinkFor = async (owner: string): Promise<NodeSink> => {
    let sink = sinks.get(owner);
    if (sink) return sink;
    const node = nodes.get(owner);
    if (!node) throw new ReshardError('conflict', `the slot map names node "${owner}", which the catalog does not list`, 'run `reshard doctor`');
    const client = await connectNode(node, access.passwords, 'reshard load');
    await beginTransaction(client);
    const copy = copyRowsIn(client, table.schema, table.name, columns, request.format);
    // An error of the COPY (a bad row, a fenced leaf) surfaces when its stream ends.
    copy.on('error', () => {});
    sink = { node, client, copy, rows: 0 };
    sinks.set(owner, sink);
    return sink;
  };

  let columns: readonly string[] = request.columns ?? [];
  try {
    const records = request.format === 'csv' ? csvRecords(counted) : textRecords(counted);
    let keyIndexes: number[] | undefined;
    for await (const record of records) {
      if (!keyIndexes) {
        if (request.format === 'csv' && request.header) {
          columns = request.columns ?? record.fields;
          keyIndexes = await keyIndexesOf(table, columns);
          continue;
        }
        if (columns.length === 0) columns = await columnsFromOwner(access, table, nodes);
        keyIndexes = await keyIndexesOf(table, columns);
      }
      rows++;
      const values = keyValues(table, keyIndexes, record.fields, rows);
      const owner = slotMap.owners[slotOfKeyByLookup(lookup, table.keyTypes, values)]!;
      const sink = await sinkFor(owner);
      sink.rows++;
      if (!sink.copy.write(record.line)) await drained(sink);
      if (rows % PROGRESS_ROWS === 0) request.onProgress?.({ rows, bytesRead });
    }
    for (const sink of sinks.values()) await finishCopy(sink);
    request.onProgress?.({ rows, bytesRead });
    // Commit only under the map the rows were routed by. A freeze of a slot
    // this load wrote waits for these transactions (its fence locks the
    // leaves), so it cannot have switched one of them yet.
    await withCatalog(access, async (catalog) => {
      await assertNoMigration(catalog);
      const now = await readSlotMap(catalog);
      if (now.epoch !== slotMap.epoch) {
        throw new ReshardError('conflict', `the slot map changed during the load (epoch ${slotMap.epoch} → ${now.epoch}); nothing was loaded`, 'run the load again');
      }
    });
    for (const sink of sinks.values()) await commitTransaction(sink.client);
    return {
      table: describeTable(table),
      rows,
      rowsByNode: Object.fromEntries([...sinks.values()].map((sink) => [sink.node.name, sink.rows])),
      epoch: slotMap.epoch,
    };
  } catch (error) {
    for (const sink of sinks.values()) {
      sink.copy.destroy();
      await rollbackQuietly(sink.client);
    }
    throw error;
  } finally {
    for (const sink of sinks.values()) await sink.client.end().catch(() => {});
  }
}

/** Rows between two progress reports. */
const PROGRESS_ROWS = 5_000;

interface InputRecord {
  /** The row as the node's COPY takes it, newline included. */
  line: string;
  /** The row's decoded fields. */
  fields: string[];
}

async function* textRecords(input: Readable): AsyncGenerator<InputRecord> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line === '\\.') return;
    if (line === '') continue;
    yield { line: `${line}\n`, fields: copyTextFields(line).map((raw) => decodeCopyTextField(raw) ?? NULL_FIELD) };
  }
}

async function* csvRecords(input: Readable): AsyncGenerator<InputRecord> {
  const parser = input.pipe(parseCsv({ raw: true, relax_column_count: false, skip_empty_lines: true }));
  for await (const { record, raw } of parser as AsyncIterable<{ record: string[]; raw: string }>) {
    yield { line: raw.endsWith('\n') ? raw : `${raw}\n`, fields: record };
  }
}

/** Stands for NULL among decoded fields; a shard key is never NULL. */
const NULL_FIELD = '\u0000NULL';

function keyValues(table: ShardedTableRecord, keyIndexes: readonly number[], fields: readonly string[], row: number): ShardKeyValue[] {
  return keyIndexes.map((index, position) => {
    const value = fields[index];
    const column = table.shardKey[position]!;
    if (value === undefined) throw badInput(`row ${row} has ${fields.length} fields, so no value for the shard key column ${column}`, 'give every row all the columns of the column list');
    if (value === NULL_FIELD || value === '') throw badInput(`row ${row} has no value for the shard key column ${column}`, 'a shard key is never NULL: fix the row');
    return value;
  });
}

async function keyIndexesOf(table: ShardedTableRecord, columns: readonly string[]): Promise<number[]> {
  return table.shardKey.map((column) => {
    const index = columns.indexOf(column);
    if (index < 0) {
      throw badInput(`the input's columns (${columns.join(', ')}) do not include the shard key column ${column} of ${describeTable(table)}`,
        `name the columns with --columns or a CSV header that includes ${table.shardKey.join(', ')}`);
    }
    return index;
  });
}

/** The table's columns, read from a node that has its parent. */
async function columnsFromOwner(access: ClusterAccess, table: ShardedTableRecord, nodes: ReadonlyMap<string, NodeRecord>): Promise<string[]> {
  const node = [...nodes.values()].find((candidate) => candidate.state !== 'removed');
  if (!node) throw new ReshardError('precondition', 'the cluster has no node', 'add one with `reshard node add`');
  const client = await connectNode(node, access.passwords, 'reshard load');
  try {
    return await tableColumns(client, table.schema, table.name);
  } finally {
    await client.end().catch(() => {});
  }
}

async function drained(sink: NodeSink): Promise<void> {
  await boundedWait(once(sink.copy, 'drain'), `node "${sink.node.name}" did not take more rows`);
}

async function finishCopy(sink: NodeSink): Promise<void> {
  const finished = new Promise<void>((resolve, reject) => {
    sink.copy.once('finish', resolve);
    sink.copy.once('error', reject);
  });
  sink.copy.end();
  try {
    await boundedWait(finished, `node "${sink.node.name}" did not confirm its rows`);
  } catch (error) {
    if (error instanceof ReshardError) throw error;
    throw new ReshardError('aborted', `node "${sink.node.name}" refused the rows: ${(error as Error).message}; nothing was loaded`,
      'fix the input (or wait for the migration that froze the slot to end) and run the load again');
  }
}

/** Every wait on a node is bounded by the statement bound. */
async function boundedWait<T>(waiting: Promise<T>, what: string): Promise<T> {
  const timeoutMs = queryTimeoutMs();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ReshardError('timeout', `${what} within ${timeoutMs} ms; nothing was loaded`, 'check the node and the network, then run the load again')), timeoutMs);
  });
  try {
    return await Promise.race([waiting, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function assertNoMigration(catalog: pg.ClientBase): Promise<void> {
  const running = await runningMigration(catalog);
  if (running) {
    throw new ReshardError('conflict', `migration ${running.id} is running, so the slot map may change under a load`, 'wait for it to end (`reshard status`), then load');
  }
}

function splitTableName(qualified: string): { schema: string; name: string } {
  const dot = qualified.indexOf('.');
  return dot < 0 ? { schema: 'public', name: qualified } : { schema: qualified.slice(0, dot), name: qualified.slice(dot + 1) };
}
