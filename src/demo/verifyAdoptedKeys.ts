import type pg from 'pg';
import { listNodes } from '../catalog/nodes.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';

export interface AdoptedKeysReport {
  /** Keys expected exactly once: the loaded rows 1..loaded and every acknowledged live insert. */
  expected: number;
  missing: number;
  duplicated: number;
  /** Keys found that nobody wrote (an insert that failed may or may not have landed: not counted). */
  unexpected: number;
}

/**
 * Reads every key of `users` from every node: each loaded key 1..loaded and
 * each acknowledged insert exactly once, nothing else.
 */
export async function verifyAdoptedKeys(access: ClusterAccess, loaded: number, acknowledged: readonly number[], uncertain: readonly number[]): Promise<AdoptedKeysReport> {
  const nodes = await withCatalog(access, (catalog) => listNodes(catalog));
  const seen = new Map<number, number>();
  await Promise.all(nodes.map(async (node) => {
    const client: pg.Client = await connectNode(node, access.passwords, 'reshard demo verify');
    try {
      const result = await client.query<{ key: string }>('SELECT id::text AS key FROM users');
      for (const row of result.rows) {
        const key = Number(row.key);
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
    } finally {
      await client.end().catch(() => {});
    }
  }));
  const expected = new Set<number>(acknowledged);
  for (let key = 1; key <= loaded; key++) expected.add(key);
  const maybe = new Set(uncertain);
  let missing = 0;
  let duplicated = 0;
  let unexpected = 0;
  for (const key of expected) {
    const count = seen.get(key) ?? 0;
    if (count === 0) missing++;
    else if (count > 1) duplicated++;
  }
  for (const [key, count] of seen) {
    if (expected.has(key)) continue;
    if (!maybe.has(key)) unexpected++;
    else if (count > 1) duplicated++;
  }
  return { expected: expected.size, missing, duplicated, unexpected };
}
