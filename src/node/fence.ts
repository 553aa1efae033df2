import type pg from 'pg';
import { quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../core/queryable.js';
import { leafName } from './leafName.js';
import { NODE_SCHEMA } from './nodeHelpers.js';
import type { SlotTable } from './slotPartitions.js';

const FENCE_ROW_TRIGGER = 'reshard_fence';
const FENCE_TRUNCATE_TRIGGER = 'reshard_fence_truncate';

/** How long a fence may wait for in-flight writers on the leaf before giving up. */
export const FENCE_LOCK_TIMEOUT_MS = 10_000;

/**
 * Rejects every write to the slot's leaf with reshard's SQLSTATE, also from
 * writers that bypass routers. Creating the trigger waits for in-flight
 * writers, so when this returns no write to the leaf is pending. Reads go on.
 */
export async function fenceSlotLeaf(db: pg.ClientBase, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const leaf = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  await db.query('BEGIN');
  try {
    await db.query(`SET LOCAL lock_timeout = '${FENCE_LOCK_TIMEOUT_MS}ms'`);
    await db.query(`CREATE OR REPLACE TRIGGER ${FENCE_ROW_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON ${leaf}
                      FOR EACH ROW EXECUTE FUNCTION ${NODE_SCHEMA}.reject_write()`);
    await db.query(`CREATE OR REPLACE TRIGGER ${FENCE_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON ${leaf}
                      FOR EACH STATEMENT EXECUTE FUNCTION ${NODE_SCHEMA}.reject_write()`);
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK');
    throw error;
  }
}

/** Undo of the fence. Idempotent; a leaf that no longer exists needs none. */
export async function unfenceSlotLeaf(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<void> {
  const leafQualified = quoteQualified(table.schema, leafName(table.name, slot, modulus));
  const exists = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [leafQualified]);
  if (!exists.rows[0]?.present) return;
  await db.query(`DROP TRIGGER IF EXISTS ${FENCE_ROW_TRIGGER} ON ${leafQualified}`);
  await db.query(`DROP TRIGGER IF EXISTS ${FENCE_TRUNCATE_TRIGGER} ON ${leafQualified}`);
}

export async function slotLeafIsFenced(db: Queryable, table: SlotTable, slot: number, modulus: number): Promise<boolean> {
  const result = await db.query<{ fenced: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2) AS fenced',
    [quoteQualified(table.schema, leafName(table.name, slot, modulus)), FENCE_ROW_TRIGGER],
  );
  return result.rows[0]?.fenced ?? false;
}
