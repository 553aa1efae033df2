import type pg from 'pg';
import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';
import { CHANGED_KEYS_TRIGGER, forgetChangedKeys } from './exchangeChangedKeys.js';
import { leafNamePattern } from './leafName.js';
import { ROW_SUMS_TRIGGERS, untrackLeafRows } from './slotRowSums.js';
import type { SlotTable } from './slotPartitions.js';

/**
 * The triggers a move or a split puts on a slot's leaves while it runs to
 * record their changes (a move's row sums, a split's changed keys): every
 * write to such a leaf pays for them, so once no migration needs them they
 * are a leftover (`reshard doctor`).
 */
const CHANGE_RECORDING_TRIGGERS: readonly string[] = [...ROW_SUMS_TRIGGERS, CHANGED_KEYS_TRIGGER];

/** Leaves of `table` (attached or not) that carry a change-recording trigger, with the triggers. */
export async function changeRecordingLeaves(db: Queryable, table: Pick<SlotTable, 'schema' | 'name'>): Promise<{ leaf: string; triggers: string[] }[]> {
  const result = await db.query<{ relname: string; triggers: string[] }>(
    `SELECT c.relname, array_agg(t.tgname::text ORDER BY t.tgname) AS triggers
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_trigger t ON t.tgrelid = c.oid
      WHERE n.nspname = $1 AND c.relname ~ $2 AND t.tgname = ANY ($3::text[])
      GROUP BY c.relname ORDER BY c.relname`,
    [table.schema, leafNamePattern(table.name), CHANGE_RECORDING_TRIGGERS],
  );
  return result.rows.map((row) => ({ leaf: row.relname, triggers: row.triggers }));
}

/** Ends every change recording on one leaf: its triggers and what they recorded. Idempotent. */
export async function endChangeRecording(db: pg.ClientBase, table: Pick<SlotTable, 'schema'>, leaf: string): Promise<void> {
  const qualified = quoteQualified(table.schema, leaf);
  await untrackLeafRows(db, [qualified]);
  await db.query(`DROP TRIGGER IF EXISTS ${CHANGED_KEYS_TRIGGER} ON ${qualified}`);
  const recorded = await db.query<{ present: boolean }>("SELECT to_regclass('reshard_node.changed_keys') IS NOT NULL AS present");
  if (recorded.rows[0]?.present) await forgetChangedKeys(db, [qualified]);
}
