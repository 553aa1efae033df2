import type pg from 'pg';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { leafName } from './leafName.js';
import { parentOid } from './parentTable.js';
import { SLOT_BOUND_CONSTRAINT, type SlotTable } from './slotPartitions.js';
import { forgetLeafRowSums, slotRowSumsSql, trackLeafRows, untrackLeafRows, untrackNamedLeafStatements } from './slotRowSums.js';
import { retiredLeafName, stagedLeafName, type LeafExchange } from './splitLeaves.js';

/**
 * How a split or a merge proves, inside its freeze, that the staged leaves
 * hold exactly the replaced leaves' rows, without a scan that grows with the
 * slot: the replaced and the staged leaves keep running row sums (count and
 * order-independent checksum, `slotRowSums.ts`), started before the freeze.
 * Per table, the staged leaves' sums must equal the replaced leaves' sums;
 * and each staged leaf carries a validated CHECK of its bound, so no row of
 * one child can stand in for a row of the other: equal in all means equal
 * child by child (up to the checksum's collisions, as a move's verification).
 * A table whose rows hash by their text form, or a leaf whose sums were cut,
 * is compared child by child with a scan instead (count and checksum of the
 * replaced leaves' rows in each child's bound against the child).
 */

/** The staged and replaced leaves of one table, quoted and qualified. */
function leavesOf(table: SlotTable, exchange: LeafExchange): { replaced: string[]; staged: string[] } {
  return {
    replaced: exchange.replaced.map((slot) => quoteQualified(table.schema, leafName(table.name, slot, exchange.clusterModulus))),
    staged: exchange.replacements.map(({ slot }) => quoteQualified(table.schema, stagedLeafName(table, exchange, slot))),
  };
}

/** Starts the sums of the replaced and the staged leaves (trigger + one scan each; outside the freeze). Per table, whether all its leaves are tracked. */
export async function trackExchangeRows(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange, lockTimeoutMs: number): Promise<boolean[]> {
  const tracked: boolean[] = [];
  for (const table of tables) {
    const { replaced, staged } = leavesOf(table, exchange);
    const leaves = [...replaced, ...staged];
    const flags = await trackLeafRows(db, leaves, leaves.map(() => table), lockTimeoutMs);
    tracked.push(flags.every(Boolean));
  }
  return tracked;
}

/** Undo before the exchange: the sums of the replaced and the staged leaves end (triggers and rows). Idempotent. */
export async function untrackExchangeRows(db: pg.ClientBase, tables: readonly SlotTable[], exchange: LeafExchange): Promise<void> {
  for (const table of tables) {
    const { replaced, staged } = leavesOf(table, exchange);
    await untrackLeafRows(db, [...replaced, ...staged]);
  }
}

/** After the exchange: the retired leaves' sums rows go (cleanup drops the leaves with their triggers). Idempotent. */
export async function forgetRetiredRowSums(db: Queryable, tables: readonly SlotTable[], exchange: LeafExchange): Promise<void> {
  await forgetLeafRowSums(db, tables.flatMap((table) => exchange.replaced.map((slot) => quoteQualified(table.schema, retiredLeafName(table, exchange, slot)))));
}

/** The statements that end an attached new leaf's sums, for the transaction that drops its bound CHECK (it locks the leaf anyway). */
export function untrackNewLeafStatements(table: SlotTable, exchange: LeafExchange, slot: number): string[] {
  return untrackNamedLeafStatements(quoteQualified(table.schema, leafName(table.name, slot, exchange.clusterModulus)));
}

/**
 * SQL: one row, column `sums`, a json array per table of
 * [replaced sums…, staged sums…, every staged leaf's bound CHECK validated],
 * each sums as `slotRowSumsSql` gives it ([tracked, rows, checksum]).
 */
export function exchangeSumsSql(tables: readonly SlotTable[], exchange: LeafExchange): string {
  const parts = tables.map((table) => {
    const { replaced, staged } = leavesOf(table, exchange);
    const checked = `(SELECT count(*) = ${staged.length} FROM pg_constraint WHERE conname = ${quoteLiteral(SLOT_BOUND_CONSTRAINT)} AND convalidated
        AND conrelid IN (${staged.map((leaf) => `${quoteLiteral(leaf)}::regclass`).join(', ')}))`;
    return `json_build_array(${[...replaced, ...staged].map(slotRowSumsSql).join(', ')}, ${checked})`;
  });
  return `SELECT json_build_array(${parts.join(', ')}) AS sums`;
}

/** One table's comparison: its rows on each side, and whether they are proven equal. */
export interface ExchangeComparison {
  table: string;
  replacedRows: number;
  /** Rows of each staged leaf, in the order of the exchange's replacements. */
  stagedRows: number[];
  equal: boolean;
  by: 'sums' | 'scan';
}

type Sums = [boolean | null, string, string];


/** Per table, what `exchangeSumsSql` returned: [replaced sums…, staged sums…, bound CHECKs validated]. */
export type ExchangeSums = unknown[][];

/** The per-table sums in the result of `exchangeSumsSql`. */
export function exchangeSumsOf(result: pg.QueryResult): ExchangeSums {
  return (result.rows[0] as { sums: ExchangeSums }).sums;
}

/**
 * Compares the sums of `exchangeSumsSql` (read in the final catch-up's round
 * trip), scanning the tables the sums cannot prove with `scan` (by default
 * child by child on `db`, every leaf on the one node). Inside the freeze.
 */
export async function compareExchange(db: Queryable, tables: readonly SlotTable[], exchange: LeafExchange, perTable: ExchangeSums,
  scan: (table: SlotTable) => Promise<ExchangeComparison> = (table) => scanExchange(db, table, exchange)): Promise<ExchangeComparison[]> {
  const comparisons: ExchangeComparison[] = [];
  for (const [index, table] of tables.entries()) {
    const row = perTable[index]!;
    const replaced = row.slice(0, exchange.replaced.length) as Sums[];
    const staged = row.slice(exchange.replaced.length, exchange.replaced.length + exchange.replacements.length) as Sums[];
    const checked = row[row.length - 1] === true;
    const name = `${table.schema}.${table.name}`;
    if (checked && [...replaced, ...staged].every(([tracked]) => tracked === true)) {
      const total = (side: Sums[]): { rows: bigint; checksum: bigint } => side.reduce((sum, [, rows, checksum]) => ({ rows: sum.rows + BigInt(rows), checksum: sum.checksum + BigInt(checksum) }), { rows: 0n, checksum: 0n });
      const before = total(replaced);
      const after = total(staged);
      comparisons.push({ table: name, replacedRows: Number(before.rows), stagedRows: staged.map(([, rows]) => Number(rows)), equal: before.rows === after.rows && before.checksum === after.checksum, by: 'sums' });
    } else {
      comparisons.push(await scan(table));
    }
  }
  return comparisons;
}

/** Child by child: count and checksum (rows by their text form) of the replaced leaves' rows in its bound, against the child. */
async function scanExchange(db: Queryable, table: SlotTable, exchange: LeafExchange): Promise<ExchangeComparison> {
  const oid = await parentOid(db, table);
  const { replaced, staged } = leavesOf(table, exchange);
  const keys = table.shardKey.map((column) => `t.${quoteIdent(column)}`).join(', ');
  const stats = (from: string, where = 'true'): string => `(SELECT json_build_array(count(*)::text, coalesce(sum(hashtextextended(t::text, 0)), 0)::text) FROM ONLY ${from} t WHERE ${where})`;
  const parts = exchange.replacements.map(({ slot, modulus }, index) => {
    const bound = `satisfies_hash_partition(${oid}::oid, ${modulus}, ${slot}, ${keys})`;
    return `json_build_array(json_build_array(${replaced.map((leaf) => stats(leaf, bound)).join(', ')}), ${stats(staged[index]!)})`;
  });
  const result = await db.query<{ children: [[string, string][], [string, string]][] }>(`SELECT json_build_array(${parts.join(', ')}) AS children`);
  let equal = true;
  let replacedRows = 0;
  const stagedRows: number[] = [];
  for (const [sources, child] of result.rows[0]!.children) {
    const rows = sources.reduce((sum, [count]) => sum + BigInt(count), 0n);
    const checksum = sources.reduce((sum, [, hash]) => sum + BigInt(hash), 0n);
    replacedRows += Number(rows);
    stagedRows.push(Number(child[0]));
    if (rows !== BigInt(child[0]) || checksum !== BigInt(child[1])) equal = false;
  }
  return { table: `${table.schema}.${table.name}`, replacedRows, stagedRows, equal, by: 'scan' };
}
