import type { Queryable } from '../plumbing/queryable.js';

/** Routers notify here when they acknowledge an epoch. */
/** A router's acknowledgement wakes a waiting freeze here; the payload is `{"router": id, "epoch": acked epoch}` (JSON). */
export const ROUTER_ACK_CHANNEL = 'reshard_router_ack';

/**
 * Routers (application-side clients) register, renew a lease and acknowledge
 * the slot-map epochs they have applied. These are the catalog's halves of
 * that contract; any language can call the same SQL.
 */
export async function registerRouter(db: Queryable, router: { id: string; name: string; epoch: number; leaseMs: number }): Promise<void> {
  await db.query(
    `INSERT INTO reshard.router (id, name, acked_epoch, lease_until)
     VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
     ON CONFLICT (id) DO UPDATE SET acked_epoch = excluded.acked_epoch, lease_until = excluded.lease_until, seen_at = now()`,
    [router.id, router.name, router.epoch, router.leaseMs],
  );
}

/** Renews the lease and records the epoch the router now serves; returns the catalog's epoch. */
export async function renewRouterLease(db: Queryable, router: { id: string; epoch: number; leaseMs: number }): Promise<number> {
  // The NOTIFY wakes a coordinator waiting for acknowledgements, instead of it polling.
  const result = await db.query<{ epoch: string }>(
    `WITH renewed AS (
       UPDATE reshard.router SET acked_epoch = greatest(acked_epoch, $2), lease_until = now() + $3 * interval '1 millisecond', seen_at = now()
        WHERE id = $1 RETURNING id, acked_epoch)
     SELECT epoch::text, (SELECT count(pg_notify('${ROUTER_ACK_CHANNEL}', json_build_object('router', id::text, 'epoch', acked_epoch)::text)) FROM renewed) AS notified
       FROM reshard.cluster WHERE id = 1`,
    [router.id, router.epoch, router.leaseMs],
  );
  return Number(result.rows[0]?.epoch ?? 0);
}

export async function unregisterRouter(db: Queryable, id: string): Promise<void> {
  await db.query('DELETE FROM reshard.router WHERE id = $1', [id]);
}

/** Live routers (lease not lapsed) that have not yet acknowledged `epoch`. */
export async function routersBehind(db: Queryable, epoch: number): Promise<{ id: string; name: string; ackedEpoch: number }[]> {
  const result = await db.query<{ id: string; name: string; acked_epoch: string }>(
    `SELECT id::text, name, acked_epoch::text FROM reshard.router WHERE lease_until > now() AND acked_epoch < $1 ORDER BY name`,
    [epoch],
  );
  return result.rows.map((row) => ({ id: row.id, name: row.name, ackedEpoch: Number(row.acked_epoch) }));
}
