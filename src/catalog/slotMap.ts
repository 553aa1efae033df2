import type pg from 'pg';
import { assert } from '../core/assert.js';
import type { Queryable } from '../plumbing/queryable.js';
import type { SlotMap } from '../core/slotMap.js';
import { getCluster } from './cluster.js';
import type { JournalInStatement } from './journal.js';
import { slotMapChangeSql } from './slotMapChange.js';

/** Routers LISTEN on this channel; the payload is the new epoch, or a change they can apply themselves (see SlotMapChange). */
export const SLOT_MAP_CHANNEL = 'reshard_slot_map';

export type SlotState = 'active' | 'frozen';

export interface SlotMapWithStates extends SlotMap {
  /** By slot id, like `owners` (undefined where no slot has the id). */
  states: readonly (SlotState | undefined)[];
}

export async function readSlotMap(db: Queryable): Promise<SlotMapWithStates> {
  const cluster = await getCluster(db);
  const result = await db.query<{ slot: number; owner: string; state: SlotState; modulus: number | null }>(
    'SELECT slot, owner, state, modulus FROM reshard.slot ORDER BY slot',
  );
  const owners: (string | undefined)[] = [];
  const states: (SlotState | undefined)[] = [];
  const moduli: (number | undefined)[] = [];
  let mixed = false;
  for (const row of result.rows) {
    // Ids below the cluster's modulus are all slots; above it only split children (sparse, like owners).
    assert(row.slot < cluster.modulus ? row.slot === owners.length : row.slot >= owners.length, `slot map has a gap at slot ${owners.length}`);
    owners[row.slot] = row.owner;
    states[row.slot] = row.state;
    if (row.modulus !== null && row.modulus !== cluster.modulus) {
      moduli[row.slot] = row.modulus;
      mixed = true;
    }
  }
  if (owners.length > 0 && owners.length < cluster.modulus) assert(false, `slot map has a gap at slot ${owners.length}`);
  return { modulus: cluster.modulus, epoch: cluster.epoch, owners, states, ...(mixed ? { slotModuli: moduli } : {}) };
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

/**
 * Marks a slot frozen (routers hold its work) or active again, bumps the
 * epoch and notifies — one statement, as it sits inside the write pause.
 * Idempotent: a slot already in that state is left alone.
 */
export async function setSlotState(client: pg.ClientBase, slot: number, state: SlotState): Promise<number> {
  const result = await client.query<{ epoch: string; present: boolean }>(
    `WITH current AS (SELECT state FROM reshard.slot WHERE slot = $1 FOR UPDATE),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND (SELECT state FROM current) <> $2 RETURNING epoch),
          changed AS (UPDATE reshard.slot SET state = $2, changed_epoch = (SELECT epoch FROM bumped) WHERE slot = $1 AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', ${slotMapChangeSql('epoch', 'changed', state)}) FROM bumped)
     SELECT coalesce((SELECT epoch FROM bumped), (SELECT epoch FROM reshard.cluster WHERE id = 1))::text AS epoch,
            EXISTS (SELECT 1 FROM current) AS present, (SELECT count(*) FROM changed) AS changed, (SELECT count(*) FROM notified) AS notified`,
    [slot, state],
  );
  assert(result.rows[0]?.present, `slot ${slot} exists in the slot map`);
  return Number(result.rows[0]!.epoch);
}

/**
 * The point of no return of a move: owner := target, state active, epoch + 1,
 * notify — one statement, hence one catalog transaction and one round trip.
 * Idempotent: a slot already owned by the target is left as it is.
 */
export async function switchSlotOwner(client: pg.ClientBase, slot: number, source: string, target: string): Promise<number> {
  return switchSlotsOwner(client, [slot], source, target);
}

/**
 * `switchSlotOwner` for several slots frozen together: all switch at one new
 * epoch, in one statement — all or none (the point of no return of them
 * all). Idempotent: slots already owned by the target are left as they are;
 * when all are, the current epoch is returned. `journal`: the switch step's
 * begin, written in the same transaction.
 */
export async function switchSlotsOwner(client: pg.ClientBase, slots: readonly number[], source: string, target: string, journal?: JournalInStatement): Promise<number> {
  assert(slots.length > 0, 'a switch names at least one slot');
  const result = await client.query<{ owners: { slot: number; owner: string }[] | null; epoch: string | null; current: string }>(
    `WITH ${journal ? `${journal.ctes(4)},` : ''}
          current AS (SELECT slot, owner FROM reshard.slot WHERE slot = ANY ($1::int[]) ORDER BY slot FOR UPDATE),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM current WHERE owner = $2)
                        AND NOT EXISTS (SELECT 1 FROM current WHERE owner IS DISTINCT FROM $2 AND owner IS DISTINCT FROM $3) RETURNING epoch),
          switched AS (UPDATE reshard.slot SET owner = $3, state = 'active', changed_epoch = (SELECT epoch FROM bumped)
                        WHERE slot IN (SELECT slot FROM current WHERE owner = $2) AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', ${slotMapChangeSql('epoch', 'switched', 'active', '$3::text')}) FROM bumped)
     SELECT (SELECT json_agg(json_build_object('slot', slot, 'owner', owner)) FROM current) AS owners, (SELECT epoch::text FROM bumped) AS epoch,
            (SELECT epoch::text FROM reshard.cluster WHERE id = 1) AS current, (SELECT count(*) FROM switched) AS switched, (SELECT count(*) FROM notified) AS notified`,
    journal ? [slots, source, target, journal.parameter] : [slots, source, target],
  );
  journal?.committed();
  const row = result.rows[0]!;
  const owners = new Map((row.owners ?? []).map((entry) => [entry.slot, entry.owner]));
  for (const slot of slots) {
    const owner = owners.get(slot);
    assert(owner === source || owner === target, `slot ${slot} is owned by ${owner ?? 'nobody'}, expected ${source} before switching to ${target}`);
  }
  return Number(row.epoch ?? row.current);
}

/** Locks the slot map against other writers until the caller's transaction ends. */
export async function lockSlotMapForWrite(db: Queryable): Promise<void> {
  await db.query('LOCK TABLE reshard.slot IN EXCLUSIVE MODE');
}

/**
 * Gives every slot the owner at its index in `owners` (a cluster that holds no
 * data yet), bumps the epoch and tells the routers, inside the caller's transaction.
 */
export async function respreadSlotMap(db: Queryable, owners: readonly string[]): Promise<void> {
  await db.query(
    `UPDATE reshard.slot s SET owner = u.owner, changed_epoch = c.epoch + 1
       FROM unnest($1::text[]) WITH ORDINALITY AS u(owner, n), reshard.cluster c
      WHERE s.slot = u.n - 1`,
    [owners],
  );
  const bumped = await db.query<{ epoch: string }>('UPDATE reshard.cluster SET epoch = epoch + 1 RETURNING epoch::text');
  await db.query(`SELECT pg_notify('${SLOT_MAP_CHANNEL}', $1)`, [bumped.rows[0]!.epoch]);
}

/**
 * The switch of a split: slot `slot` becomes (childModulus, slot) and slot
 * `slot + childModulus / 2` is added with owner `highOwner`, both active,
 * epoch + 1, notify — one statement. Idempotent: a split already recorded
 * returns the current epoch.
 */
export async function recordSlotSplit(client: pg.ClientBase, slot: number, childModulus: number, highOwner: string): Promise<number> {
  const high = slot + childModulus / 2;
  assert(Number.isSafeInteger(high), `modulus ${childModulus} of a split child is even`);
  const result = await client.query<{ epoch: string; present: boolean; done: boolean }>(
    `WITH current AS (SELECT coalesce(s.modulus, c.modulus) AS modulus FROM reshard.slot s, reshard.cluster c WHERE s.slot = $1 FOR UPDATE OF s),
          todo AS (SELECT 1 FROM current WHERE modulus * 2 = $2),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM todo) RETURNING epoch),
          low AS (UPDATE reshard.slot SET modulus = $2, state = 'active', changed_epoch = (SELECT epoch FROM bumped)
                   WHERE slot = $1 AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          high AS (INSERT INTO reshard.slot (slot, owner, state, modulus, changed_epoch)
                   SELECT $3, $4, 'active', $2, epoch FROM bumped RETURNING slot),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', epoch::text) FROM bumped)
     SELECT coalesce((SELECT epoch FROM bumped), (SELECT epoch FROM reshard.cluster WHERE id = 1))::text AS epoch,
            EXISTS (SELECT 1 FROM current) AS present, (SELECT modulus FROM current) = $2 AS done,
            (SELECT count(*) FROM low) + (SELECT count(*) FROM high) + (SELECT count(*) FROM notified) AS changed`,
    [slot, childModulus, high, highOwner],
  );
  const row = result.rows[0]!;
  assert(row.present, `slot ${slot} exists in the slot map`);
  return Number(row.epoch);
}

/**
 * The switch of a merge: slot `sibling` is deleted and `parent` becomes
 * (parentModulus, parent), active, epoch + 1, notify — one statement.
 * Idempotent: a merge already recorded returns the current epoch.
 */
export async function recordSlotMerge(client: pg.ClientBase, parent: number, sibling: number, parentModulus: number): Promise<number> {
  const result = await client.query<{ epoch: string }>(
    `WITH gone AS (SELECT slot FROM reshard.slot WHERE slot = $2 FOR UPDATE),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM gone) RETURNING epoch, modulus),
          deleted AS (DELETE FROM reshard.slot WHERE slot = $2 AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          kept AS (UPDATE reshard.slot SET modulus = nullif($3, (SELECT modulus FROM bumped)), state = 'active', changed_epoch = (SELECT epoch FROM bumped)
                    WHERE slot = $1 AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', epoch::text) FROM bumped)
     SELECT coalesce((SELECT epoch FROM bumped), (SELECT epoch FROM reshard.cluster WHERE id = 1))::text AS epoch,
            (SELECT count(*) FROM deleted) + (SELECT count(*) FROM kept) + (SELECT count(*) FROM notified) AS changed`,
    [parent, sibling, parentModulus],
  );
  return Number(result.rows[0]!.epoch);
}

/** The modulus of each of `slots` (a split slot's is not the cluster's). */
export async function slotModuliOf(db: Queryable, slots: readonly number[]): Promise<Map<number, number>> {
  const result = await db.query<{ slot: number; modulus: number }>(
    'SELECT s.slot, coalesce(s.modulus, c.modulus) AS modulus FROM reshard.slot s, reshard.cluster c WHERE s.slot = ANY($1::int[])',
    [slots],
  );
  return new Map(result.rows.map((row) => [row.slot, row.modulus]));
}

/** The epoch of the slot's last change in the slot map (a split's or a merge's switch, for its low slot). */
export async function slotChangedEpoch(db: Queryable, slot: number): Promise<number> {
  const result = await db.query<{ epoch: string }>('SELECT changed_epoch::text AS epoch FROM reshard.slot WHERE slot = $1', [slot]);
  assert(result.rows[0], `slot ${slot} exists in the slot map`);
  return Number(result.rows[0].epoch);
}
