import type { Queryable } from '../plumbing/queryable.js';

/**
 * One active autopilot per catalog: a row with a holder and an expiry. Taking
 * it succeeds when nobody holds it, the lease lapsed, or `holder` already
 * has it (a renewal). Returns who holds it now and until when.
 */
export async function takeAutopilotLease(db: Queryable, holder: string, leaseMs: number): Promise<{ held: boolean; holder: string; leaseUntil: Date }> {
  const result = await db.query<{ holder: string; lease_until: Date }>(
    `INSERT INTO reshard.autopilot_lease (id, holder, lease_until) VALUES (1, $1, now() + $2 * interval '1 millisecond')
     ON CONFLICT (id) DO UPDATE
        SET holder = excluded.holder, lease_until = excluded.lease_until,
            acquired_at = CASE WHEN reshard.autopilot_lease.holder = excluded.holder THEN reshard.autopilot_lease.acquired_at ELSE now() END
      WHERE reshard.autopilot_lease.holder = excluded.holder OR reshard.autopilot_lease.lease_until < now()
     RETURNING holder, lease_until`,
    [holder, leaseMs],
  );
  if (result.rows[0]) return { held: true, holder: result.rows[0].holder, leaseUntil: result.rows[0].lease_until };
  const current = await db.query<{ holder: string; lease_until: Date }>('SELECT holder, lease_until FROM reshard.autopilot_lease WHERE id = 1');
  return { held: false, holder: current.rows[0]?.holder ?? '', leaseUntil: current.rows[0]?.lease_until ?? new Date(0) };
}

/** Gives the lease up at a clean stop, so that a waiting autopilot takes over at once. */
export async function releaseAutopilotLease(db: Queryable, holder: string): Promise<void> {
  await db.query('DELETE FROM reshard.autopilot_lease WHERE id = 1 AND holder = $1', [holder]);
}

/** Who holds the lease now, if anyone (a lapsed lease is reported as held by nobody). */
export async function readAutopilotLease(db: Queryable): Promise<{ holder: string; leaseUntil: Date; acquiredAt: Date } | undefined> {
  const result = await db.query<{ holder: string; lease_until: Date; acquired_at: Date }>('SELECT holder, lease_until, acquired_at FROM reshard.autopilot_lease WHERE id = 1 AND lease_until > now()');
  const row = result.rows[0];
  return row ? { holder: row.holder, leaseUntil: row.lease_until, acquiredAt: row.acquired_at } : undefined;
}
