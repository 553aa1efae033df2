import type pg from 'pg';
import type { Queryable } from '../plumbing/queryable.js';
import { claimRunningPlace } from './migrationRuns.js';

/**
 * A split or a merge of slots on one node, recorded as a migration (so that
 * it claims the single running place, is journaled per step and shows in the
 * history) with one move of kind 'split' or 'merge' (source = the node;
 * target = the node, or for `split --to` the high child's node). Its plan
 * says what it exchanges.
 */
export interface SlotExchangePlan {
  kind: 'split' | 'merge';
  /** The slot the journal and the move are keyed by: the parent of a split, the merged slot of a merge. */
  slot: number;
  node: string;
  replaced: number[];
  replacements: { slot: number; modulus: number }[];
  replacedModulus: number;
  /**
   * A split's high child is placed on this node instead of `node` (`split
   * --to`): its half of the rows is copied there once, straight from the
   * replaced leaf. Absent: both children stay on `node` (and every plan
   * written before `split --to` was one migration reads so).
   */
  to?: string;
}

/** Claims the running place and records the exchange's migration and move. */
export async function createSlotExchangeMigration(client: pg.ClientBase, plan: SlotExchangePlan, baseEpoch: number, bytesTotal: number, origin?: string): Promise<number> {
  return claimRunningPlace(client, async () => {
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO reshard.migration (state, mode, base_epoch, plan, bytes_total) VALUES ('running', 'online', $1, $2, $3) RETURNING id::text`,
      // `origin`: who started it (the autopilot tags its own, and a restarted autopilot finishes them).
      [baseEpoch, JSON.stringify(origin === undefined ? plan : { ...plan, origin }), bytesTotal],
    );
    const id = Number(inserted.rows[0]!.id);
    await client.query(
      `INSERT INTO reshard.move (migration_id, slot, source, target, wave, bytes_total, kind) VALUES ($1, $2, $3, $4, 0, $5, $6)`,
      [id, plan.slot, plan.node, plan.to ?? plan.node, bytesTotal, plan.kind],
    );
    return id;
  });
}

/** The exchange a migration records, or undefined for a rebalance. */
export async function slotExchangeOf(db: Queryable, migrationId: number): Promise<SlotExchangePlan | undefined> {
  const result = await db.query<{ plan: SlotExchangePlan }>(
    `SELECT plan FROM reshard.migration WHERE id = $1 AND plan->>'kind' IN ('split', 'merge')`,
    [migrationId],
  );
  return result.rows[0]?.plan;
}

/**
 * `reshard split --all`: every slot split once, one at a time, as one
 * migration (progress, pause, cancel, status and the dashboard like a
 * rebalance) with one move of kind 'split' per slot, in slot order.
 */
export interface SplitAllPlan {
  /** 'merge-all': the rollback of a split-all, the same machine with merges. */
  kind: 'split-all' | 'merge-all';
  /** The exchanges in order (splits, or for 'merge-all' merges). */
  splits: SlotExchangePlan[];
}

/** Claims the running place and records the split-all migration and one move per split. */
export async function createSplitAllMigration(client: pg.ClientBase, plan: SplitAllPlan, baseEpoch: number): Promise<number> {
  return claimRunningPlace(client, async () => {
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO reshard.migration (state, mode, base_epoch, plan, bytes_total) VALUES ('running', 'online', $1, $2, 0) RETURNING id::text`,
      [baseEpoch, JSON.stringify(plan)],
    );
    const id = Number(inserted.rows[0]!.id);
    await client.query(
      `INSERT INTO reshard.move (migration_id, slot, source, target, wave, bytes_total, kind)
       SELECT $1, split.slot, split.node, split.node, 0, 0, $4
         FROM unnest($2::int[], $3::text[]) AS split (slot, node)`,
      [id, plan.splits.map((split) => split.slot), plan.splits.map((split) => split.node), plan.kind === 'merge-all' ? 'merge' : 'split'],
    );
    return id;
  });
}

/** The split-all (or merge-all) a migration records, or undefined for any other migration. */
export async function splitAllOf(db: Queryable, migrationId: number): Promise<SplitAllPlan | undefined> {
  const result = await db.query<{ plan: SplitAllPlan }>(
    `SELECT plan FROM reshard.migration WHERE id = $1 AND plan->>'kind' IN ('split-all', 'merge-all')`,
    [migrationId],
  );
  return result.rows[0]?.plan;
}
