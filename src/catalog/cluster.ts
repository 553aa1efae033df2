import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';

export interface ClusterRecord {
  modulus: number;
  epoch: number;
}

export async function getCluster(db: Queryable): Promise<ClusterRecord> {
  const result = await db.query<{ modulus: number; epoch: string }>('SELECT modulus, epoch::text FROM reshard.cluster WHERE id = 1');
  const row = result.rows[0];
  if (!row) throw new ReshardError('precondition', 'the catalog has no cluster yet', 'run `reshard init --slots <M>`');
  return { modulus: row.modulus, epoch: Number(row.epoch) };
}

/** Records the slot count once; a second init with another count is refused. */
export async function ensureCluster(db: Queryable, modulus: number): Promise<ClusterRecord> {
  await db.query('INSERT INTO reshard.cluster (id, modulus, epoch) VALUES (1, $1, 0) ON CONFLICT (id) DO NOTHING', [modulus]);
  const cluster = await getCluster(db);
  if (cluster.modulus !== modulus) {
    throw new ReshardError(
      'conflict',
      `the cluster already has ${cluster.modulus} slots, not ${modulus}`,
      `omit --slots or pass --slots ${cluster.modulus}; the slot count is fixed when the cluster is created`,
    );
  }
  return cluster;
}
