import type pg from 'pg';
import { listNodes } from '../catalog/nodes.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';

export interface ExactlyOnceReport {
  expected: number;
  missing: number;
  duplicated: number;
  unexpected: number;
}

/**
 * Reads every key of `column` in `table` from every node and checks that each
 * of 1..expected appears exactly once across the cluster.
 */
export async function verifyKeysExactlyOnce(access: ClusterAccess, table: string, column: string, expected: number): Promise<ExactlyOnceReport> {
  const nodes = await withCatalog(access, (catalog) => listNodes(catalog));
  const seen = new Uint8Array(expected + 1);
  let unexpected = 0;
  await Promise.all(nodes.map(async (node) => {
    const client: pg.Client = await connectNode(node, access.passwords, 'reshard demo verify');
    try {
      const result = await client.query<{ key: string }>(`SELECT ${column}::text AS key FROM ${table}`);
      for (const row of result.rows) {
        const key = Number(row.key);
        if (!Number.isInteger(key) || key < 1 || key > expected) unexpected++;
        else if (seen[key]! < 2) seen[key]! += 1;
      }
    } finally {
      await client.end().catch(() => {});
    }
  }));
  let missing = 0;
  let duplicated = 0;
  for (let key = 1; key <= expected; key++) {
    if (seen[key] === 0) missing++;
    else if (seen[key]! > 1) duplicated++;
  }
  return { expected, missing, duplicated, unexpected };
}
