import type pg from 'pg';
import { assert } from '../core/assert.js';
import { SLOT_MAP_CHANNEL } from './slotMap.js';

/** A live router (lease not lapsed) as the freeze found it. */
export interface LiveRouter {
  id: string;
  name: string;
  ackedEpoch: number;
}

/**
 * The catalog's half of a freeze in one statement (one round trip inside the
 * write pause): the slot frozen, the epoch bumped, routers notified (as
 * `setSlotState` does), and the live routers with the epoch each has
 * acknowledged — every one of them is behind the new epoch, so the freeze
 * waits for their acknowledgements without asking again. Idempotent: a slot
 * already frozen keeps its epoch.
 */
export async function freezeSlotInCatalog(client: pg.ClientBase, slot: number): Promise<{ epoch: number; liveRouters: LiveRouter[] }> {
  const result = await client.query<{ epoch: string; present: boolean; routers: { id: string; name: string; acked: string }[] | null }>(
    `WITH current AS (SELECT state FROM reshard.slot WHERE slot = $1 FOR UPDATE),
          bumped AS (UPDATE reshard.cluster SET epoch = epoch + 1 WHERE id = 1 AND (SELECT state FROM current) <> 'frozen' RETURNING epoch),
          changed AS (UPDATE reshard.slot SET state = 'frozen', changed_epoch = (SELECT epoch FROM bumped) WHERE slot = $1 AND EXISTS (SELECT 1 FROM bumped) RETURNING slot),
          notified AS (SELECT pg_notify('${SLOT_MAP_CHANNEL}', epoch::text) FROM bumped)
     SELECT coalesce((SELECT epoch FROM bumped), (SELECT epoch FROM reshard.cluster WHERE id = 1))::text AS epoch,
            EXISTS (SELECT 1 FROM current) AS present, (SELECT count(*) FROM changed) AS changed, (SELECT count(*) FROM notified) AS notified,
            (SELECT json_agg(json_build_object('id', r.id::text, 'name', r.name, 'acked', r.acked_epoch::text) ORDER BY r.name)
               FROM reshard.router r WHERE r.lease_until > now()) AS routers`,
    [slot],
  );
  const row = result.rows[0];
  assert(row?.present, `slot ${slot} exists in the slot map`);
  return { epoch: Number(row.epoch), liveRouters: (row.routers ?? []).map((router) => ({ id: router.id, name: router.name, ackedEpoch: Number(router.acked) })) };
}
