import type pg from 'pg';
import { assert } from '../core/assert.js';
import { SLOT_MAP_CHANNEL } from './slotMap.js';
import { slotMapChangeSql } from './slotMapChange.js';

/** A live router (lease not lapsed) as the freeze found it. */
export interface LiveRouter {
  id: string;
  name: string;
  ackedEpoch: number;
}

/**
 * The catalog's half of a freeze in one statement (one round trip inside the
 * write pause): the slots frozen at one new epoch, the epoch bumped once,
 * routers notified (as `setSlotState` does), and the live routers with the
 * epoch each has acknowledged — every one of them is behind the new epoch, so
 * the freeze waits for their acknowledgements without asking again.
 * Idempotent: when every slot is frozen already, nothing changes and the
 * current epoch is returned; otherwise the slots not frozen yet are.
 */
export async function freezeSlotsInCatalog(client: pg.ClientBase, slots: readonly number[]): Promise<{ epoch: number; liveRouters: LiveRouter[] }> {
  assert(slots.length > 0, 'a freeze names at least one slot');
  const result = await client.query<{ epoch: string; present: string; routers: { id: string; name: string; acked: string }[] | null }>(
    `WITH current AS (SELECT slot, state FROM reshard.slot WHERE slot = ANY ($1::int[]) ORDER BY slot FOR UPDATE),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM current WHERE state <> 'frozen') RETURNING epoch),
          changed AS (UPDATE reshard.slot SET state = 'frozen', changed_epoch = (SELECT epoch FROM bumped)
                       WHERE slot IN (SELECT slot FROM current WHERE state <> 'frozen') AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', ${slotMapChangeSql('epoch', 'changed', 'frozen')}) FROM bumped)
     SELECT coalesce((SELECT epoch FROM bumped), (SELECT epoch FROM reshard.cluster WHERE id = 1))::text AS epoch,
            (SELECT count(*) FROM current)::text AS present, (SELECT count(*) FROM changed) AS changed, (SELECT count(*) FROM notified) AS notified,
            (SELECT json_agg(json_build_object('id', r.id::text, 'name', r.name, 'acked', r.acked_epoch::text) ORDER BY r.name)
               FROM reshard.router r WHERE r.lease_until > now()) AS routers`,
    [slots],
  );
  const row = result.rows[0];
  assert(Number(row?.present) === new Set(slots).size, `slots ${slots.join(', ')} exist in the slot map`);
  return { epoch: Number(row!.epoch), liveRouters: (row!.routers ?? []).map((router) => ({ id: router.id, name: router.name, ackedEpoch: Number(router.acked) })) };
}
