import type pg from 'pg';
import { assert } from '../core/assert.js';
import type { Queryable } from '../core/queryable.js';
import type { SlotMap } from '../core/slotMap.js';
import { getCluster } from './cluster.js';

/** Routers LISTEN on this channel; the payload is the new epoch. */
export const SLOT_MAP_CHANNEL = 'reshard_slot_map';

export type SlotState = 'active' | 'frozen';

export interface SlotMapWithStates extends SlotMap {
  states: readonly SlotState[];
}

export async function readSlotMap(db: Queryable): Promise<SlotMapWithStates> {
  const cluster = await getCluster(db);
  const result = await db.query<{ slot: number; owner: string; state: SlotState }>(
    'SELECT slot, owner, state FROM reshard.slot ORDER BY slot',
  );
  const owners: string[] = [];
  const states: SlotState[] = [];
  for (const row of result.rows) {
    assert(row.slot === owners.length, `slot map has a gap at slot ${owners.length}`);
    owners.push(row.owner);
    states.push(row.state);
  }
  return { modulus: cluster.modulus, epoch: cluster.epoch, owners, states };
}

export async function slotMapIsEmpty(db: Queryable): Promise<boolean> {
  const result = await db.query<{ empty: boolean }>('SELECT NOT EXISTS (SELECT 1 FROM reshard.slot) AS empty');
  return result.rows[0]?.empty ?? true;
}

/** Writes the first slot map (epoch 1). Called once, inside the caller's transaction. */
export async function writeInitialSlotMap(db: Queryable, owners: readonly string[]): Promise<void> {
  const cluster = await getCluster(db);
  assert(owners.length === cluster.modulus, 'initial slot map must cover every slot');
  await db.query(
    `INSERT INTO reshard.slot (slot, owner, changed_epoch)
     SELECT s - 1, owner, 1 FROM unnest($1::text[]) WITH ORDINALITY AS u(owner, s)`,
    [owners],
  );
  await db.query('UPDATE reshard.cluster SET epoch = 1 WHERE id = 1');
  await db.query(`SELECT pg_notify('${SLOT_MAP_CHANNEL}', '1')`);
}

async function bumpEpoch(db: Queryable): Promise<number> {
  const result = await db.query<{ epoch: string }>('UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch::text');
  const epoch = Number(result.rows[0]?.epoch);
  await db.query(`SELECT pg_notify('${SLOT_MAP_CHANNEL}', $1)`, [String(epoch)]);
  return epoch;
}

async function inTransaction<T>(client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/** Marks a slot frozen (routers hold its work) and bumps the epoch. Idempotent. */
export async function setSlotState(client: pg.ClientBase, slot: number, state: SlotState): Promise<number> {
  return inTransaction(client, async () => {
    const current = await client.query<{ state: SlotState }>('SELECT state FROM reshard.slot WHERE slot = $1 FOR UPDATE', [slot]);
    assert(current.rows.length === 1, `slot ${slot} exists in the slot map`);
    if (current.rows[0]!.state === state) return (await getCluster(client)).epoch;
    const epoch = await bumpEpoch(client);
    await client.query('UPDATE reshard.slot SET state = $2, changed_epoch = $3 WHERE slot = $1', [slot, state, epoch]);
    return epoch;
  });
}

/**
 * The point of no return of a move: owner := target, state active, epoch + 1,
 * notify — one catalog transaction. Idempotent: a slot already owned by the
 * target is left as it is.
 */
export async function switchSlotOwner(client: pg.ClientBase, slot: number, source: string, target: string): Promise<number> {
  return inTransaction(client, async () => {
    const current = await client.query<{ owner: string }>('SELECT owner FROM reshard.slot WHERE slot = $1 FOR UPDATE', [slot]);
    const owner = current.rows[0]?.owner;
    if (owner === target) return (await getCluster(client)).epoch;
    assert(owner === source, `slot ${slot} is owned by ${owner}, expected ${source} before switching to ${target}`);
    const epoch = await bumpEpoch(client);
    await client.query("UPDATE reshard.slot SET owner = $2, state = 'active', changed_epoch = $3 WHERE slot = $1", [slot, target, epoch]);
    return epoch;
  });
}
