import type pg from 'pg';
import { assert } from '../core/assert.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import { copyStatements } from './copySlot.js';
import { primaryKeyColumns, recordedKeysSql } from './exchangeChangedKeys.js';
import type { ExchangeComparison } from './exchangeRowSums.js';
import { leafName } from './leafName.js';
import { parentOid } from './parentTable.js';
import type { SlotTable } from './slotPartitions.js';
import { stagedLeafName, storedColumns, type LeafExchange } from './splitLeaves.js';

/**
 * The high child of a split placed on another node (`reshard split --slot N
 * --to NODE`): its half of the replaced leaf's rows goes there once, straight
 * from the source, and never lands on the source.
 *
 * The source keeps what an in-place split keeps (the replaced leaf, its
 * recorded keys, the low child staged beside it: the `local` exchange, whose
 * only replacement is the low child); the target gets the high child as a
 * standalone leaf under its final name (its CHECK proves its bound). The bulk
 * copy is one `COPY (SELECT … WHERE satisfies_hash_partition(…)) TO STDOUT`
 * piped into `COPY … FROM STDIN` (binary, no staging file), begun after the
 * recording trigger committed, so every change it misses is recorded. A
 * catch-up round reads, in the source's REPEATABLE READ transaction that
 * also catches up the low child, the recorded keys and their rows in the
 * high bound; the target replaces its rows of those keys by them and commits;
 * only then does the source forget the keys it saw and commit — a crash in
 * between leaves the keys recorded, and the next round reads them again
 * (a round is idempotent).
 */
export interface RemoteChild {
  slot: number;
  modulus: number;
}

/** The high child as an exchange of its own on the target: nothing replaced there, one leaf staged under its final name. */
export function remoteChildExchange(local: LeafExchange, child: RemoteChild): LeafExchange {
  return { clusterModulus: local.clusterModulus, replaced: [], replacements: [child], kind: local.kind };
}

function replacedLeaf(table: SlotTable, local: LeafExchange): string {
  assert(local.replaced.length === 1, `a split replaces one leaf (not ${local.replaced.length})`);
  return quoteQualified(table.schema, leafName(table.name, local.replaced[0]!, local.clusterModulus));
}

function childLeaf(table: SlotTable, local: LeafExchange, child: RemoteChild): string {
  return quoteQualified(table.schema, leafName(table.name, child.slot, local.clusterModulus));
}

/**
 * The bulk copy: per table, the replaced leaf's rows in the child's bound,
 * from the source into the target's (emptied) child leaf, in one target
 * transaction per table, so a repeat starts over. Returns the rows copied.
 */
export async function copyHalfToNode(source: pg.ClientBase, target: pg.ClientBase, tables: readonly SlotTable[], local: LeafExchange, child: RemoteChild): Promise<{ rows: number; bytes: number }> {
  let rows = 0;
  let bytes = 0;
  for (const table of tables) {
    const oid = await parentOid(source, table);
    const columns = (await storedColumns(source, oid)).join(', ');
    const keys = table.shardKey.map(quoteIdent).join(', ');
    const leaf = childLeaf(table, local, child);
    await target.query(`BEGIN; TRUNCATE ${leaf}`);
    try {
      const copied = await copyStatements(source, target,
        `COPY (SELECT ${columns} FROM ONLY ${replacedLeaf(table, local)} WHERE satisfies_hash_partition(${oid}::oid, ${child.modulus}, ${child.slot}, ${keys})) TO STDOUT (FORMAT binary)`,
        `COPY ${leaf} (${columns}) FROM STDIN (FORMAT binary)`, leaf, () => {});
      await target.query('COMMIT');
      rows += copied.rows;
      bytes += copied.bytes;
    } catch (error) {
      await target.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }
  return { rows, bytes };
}

/** A catch-up round across the two nodes: what the source reads for the child, and how the target applies it. */
export interface RemoteCatchUp {
  /** Source statements, one per table, run in the round's transaction: one row, `keys` and `rows` as json text. */
  reads: string[];
  /** The target's statements for what `reads` returned (one transaction), or none when no key was recorded. */
  apply(reads: readonly pg.QueryResult[]): string[];
}

/** Builds the round's statements (once per step: they name the tables' columns on each node). */
export async function remoteCatchUp(source: pg.ClientBase, target: pg.ClientBase, tables: readonly SlotTable[], local: LeafExchange, child: RemoteChild): Promise<RemoteCatchUp> {
  const reads: string[] = [];
  const appliers: ((keys: string, rows: string) => string[])[] = [];
  for (const table of tables) {
    const oid = await parentOid(source, table);
    const keyColumns = (await primaryKeyColumns(source, table)).map(quoteIdent);
    const columns = await storedColumns(source, oid);
    const shardKey = table.shardKey.map((column) => `l.${quoteIdent(column)}`).join(', ');
    const keys = recordedKeysSql(table, local, keyColumns);
    const matches = (alias: string): string => keyColumns.map((column) => `${alias}.${column} = k.${column}`).join(' AND ');
    reads.push(`SELECT (SELECT coalesce(json_agg(k), '[]')::text FROM ${keys} k) AS keys,
  (SELECT coalesce(json_agg(x), '[]')::text FROM (SELECT ${columns.map((column) => `l.${column}`).join(', ')} FROM ONLY ${replacedLeaf(table, local)} l JOIN ${keys} k ON ${matches('l')}
    WHERE satisfies_hash_partition(${oid}::oid, ${child.modulus}, ${child.slot}, ${shardKey})) x) AS rows`);
    // The target's own names: the same columns (a sharded table has one definition), its own parent's row type.
    const targetParent = quoteQualified(table.schema, table.name);
    const targetColumns = (await storedColumns(target, await parentOid(target, table))).join(', ');
    const targetKeys = (await primaryKeyColumns(target, table)).map(quoteIdent);
    const leaf = childLeaf(table, local, child);
    appliers.push((keysJson, rowsJson) => [
      `DELETE FROM ONLY ${leaf} t USING json_populate_recordset(NULL::${targetParent}, ${quoteLiteral(keysJson)}::json) k WHERE ${targetKeys.map((column) => `t.${column} = k.${column}`).join(' AND ')}`,
      `INSERT INTO ${leaf} (${targetColumns}) OVERRIDING SYSTEM VALUE SELECT ${targetColumns} FROM json_populate_recordset(NULL::${targetParent}, ${quoteLiteral(rowsJson)}::json)`,
    ]);
  }
  return {
    reads,
    apply(results) {
      assert(results.length === appliers.length, `one read per table (${results.length} for ${appliers.length})`);
      const rows = results.map((result) => result.rows[0] as { keys: string; rows: string });
      if (rows.every((row) => row.keys === '[]')) return [];
      return appliers.flatMap((applier, index) => (rows[index]!.keys === '[]' ? [] : applier(rows[index]!.keys, rows[index]!.rows)));
    },
  };
}

/**
 * One catch-up round of both children (see the top of this file): the
 * source's REPEATABLE READ transaction applies the local children's
 * `statements` (from `catchUpStatements` of the local exchange: its last one
 * forgets the keys) and reads the remote child's rows; the target applies
 * them and commits; then the source forgets the keys and commits. `after`:
 * statements each side runs once its part committed, in the same message
 * (the sums that verify it). Returns the recorded changes the round took.
 */
export async function catchUpAcross(
  source: pg.ClientBase, target: pg.ClientBase, statements: readonly string[], remote: RemoteCatchUp,
  after: { source?: readonly string[]; target?: readonly string[] } = {},
): Promise<{ changes: number; afterSource: pg.QueryResult[]; afterTarget: pg.QueryResult[] }> {
  const apply = statements.slice(0, -1);
  const forget = statements[statements.length - 1]!;
  let afterTarget: pg.QueryResult[] = [];
  let sourceResults: pg.QueryResult[];
  try {
    const read = (await source.query(['BEGIN ISOLATION LEVEL REPEATABLE READ', ...apply, ...remote.reads].join(';\n'))) as unknown as pg.QueryResult[];
    const targetStatements = remote.apply(read.slice(1 + apply.length));
    const targetPart = targetStatements.length === 0 ? [] : ['BEGIN', ...targetStatements, 'COMMIT'];
    if (targetPart.length > 0 || (after.target?.length ?? 0) > 0) {
      try {
        afterTarget = resultsOf(await target.query([...targetPart, ...(after.target ?? [])].join(';\n'))).slice(targetPart.length);
      } catch (error) {
        await target.query('ROLLBACK').catch(() => {});
        throw error;
      }
    }
    // The target has committed the keys' rows: only now may the source forget the keys.
    sourceResults = (await source.query([forget, 'COMMIT', ...(after.source ?? [])].join(';\n'))) as unknown as pg.QueryResult[];
  } catch (error) {
    await source.query('ROLLBACK').catch(() => {});
    throw error;
  }
  return { changes: sourceResults[0]?.rowCount ?? 0, afterSource: sourceResults.slice(2), afterTarget };
}

/** node-postgres answers a message of one statement with its result, of several with a list. */
function resultsOf(answer: pg.QueryResult | pg.QueryResult[]): pg.QueryResult[] {
  return Array.isArray(answer) ? answer : [answer];
}

/**
 * Child by child, for a table the sums cannot prove: count and checksum
 * (rows by their text form) of the replaced leaf's rows in each child's bound
 * on the source, against the low child there and the high child on the target.
 */
export async function scanAcross(source: pg.ClientBase, target: pg.ClientBase, table: SlotTable, local: LeafExchange, child: RemoteChild): Promise<ExchangeComparison> {
  assert(local.replacements.length === 1, `the source keeps one child of a split --to (not ${local.replacements.length})`);
  const oid = await parentOid(source, table);
  const keys = table.shardKey.map((column) => `t.${quoteIdent(column)}`).join(', ');
  const stats = (from: string, where = 'true'): string => `(SELECT json_build_array(count(*)::text, coalesce(sum(hashtextextended(t::text, 0)), 0)::text) FROM ONLY ${from} t WHERE ${where})`;
  const low = local.replacements[0]!;
  const leaf = replacedLeaf(table, local);
  const lowLeaf = quoteQualified(table.schema, stagedLeafName(table, local, low.slot));
  const bound = (slot: number, modulus: number): string => `satisfies_hash_partition(${oid}::oid, ${modulus}, ${slot}, ${keys})`;
  const [onSource, onTarget] = await Promise.all([
    source.query<{ sums: [string, string][] }>(`SELECT json_build_array(${stats(leaf, bound(low.slot, low.modulus))}, ${stats(lowLeaf)}, ${stats(leaf, bound(child.slot, child.modulus))}) AS sums`),
    target.query<{ sums: [string, string] }>(`SELECT ${stats(childLeaf(table, local, child))} AS sums`),
  ]);
  const [lowSource, lowChild, highSource] = onSource.rows[0]!.sums;
  const highChild = onTarget.rows[0]!.sums;
  const same = (a: [string, string], b: [string, string]): boolean => a[0] === b[0] && a[1] === b[1];
  return {
    table: `${table.schema}.${table.name}`, replacedRows: Number(lowSource![0]) + Number(highSource![0]), stagedRows: [Number(lowChild![0]), Number(highChild[0])],
    equal: same(lowSource!, lowChild!) && same(highSource!, highChild), by: 'scan',
  };
}
