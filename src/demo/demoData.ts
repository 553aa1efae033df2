import type pg from 'pg';
import { slotLookup, slotOfKeyByLookup } from '../core/slotMap.js';
import { listNodes } from '../catalog/nodes.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';

/** The demo's colocated tables: a user and their orders share a slot. */
export const DEMO_TABLES = [
  { name: 'users', shardKey: ['id'], definition: 'id bigint NOT NULL, name text NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id)' },
  { name: 'orders', shardKey: ['user_id'], definition: 'user_id bigint NOT NULL, id bigint NOT NULL, amount numeric(12,2) NOT NULL, PRIMARY KEY (user_id, id)', colocateWith: 'users' },
] as const;

const BATCH_ROWS = 20_000;

/**
 * Loads `users` rows 1..count and one order per user, each on the node that
 * owns its slot (computed locally, as a router would). Returns rows inserted.
 */
export async function loadDemoRows(access: ClusterAccess, count: number, onProgress?: (rowsLoaded: number) => void): Promise<number> {
  const { owners, lookup, nodes } = await withCatalog(access, async (catalog) => {
    const slotMap = await readSlotMap(catalog);
    return { owners: slotMap.owners, lookup: slotLookup(slotMap), nodes: await listNodes(catalog) };
  });
  const clients = new Map<string, pg.Client>();
  try {
    for (const node of nodes) clients.set(node.name, await connectNode(node, access.passwords, 'reshard demo loader'));
    let loaded = 0;
    for (let first = 1; first <= count; first += BATCH_ROWS) {
      const last = Math.min(count, first + BATCH_ROWS - 1);
      const idsByNode = new Map<string, number[]>();
      for (let id = first; id <= last; id++) {
        const owner = owners[slotOfKeyByLookup(lookup, ['bigint'], [id])]!;
        const ids = idsByNode.get(owner) ?? [];
        ids.push(id);
        idsByNode.set(owner, ids);
      }
      await Promise.all([...idsByNode].map(async ([owner, ids]) => {
        const client = clients.get(owner)!;
        await client.query(
          `INSERT INTO users (id, name, payload)
           SELECT id, 'user ' || id, repeat(md5(id::text), 3) FROM unnest($1::bigint[]) AS id`,
          [ids],
        );
        await client.query(
          `INSERT INTO orders (user_id, id, amount)
           SELECT id, id * 10, (id % 1000) + 0.99 FROM unnest($1::bigint[]) AS id`,
          [ids],
        );
      }));
      loaded = last;
      onProgress?.(loaded);
    }
    await Promise.all([...clients.values()].map((client) => client.query('ANALYZE users; ANALYZE orders')));
    return loaded * 2;
  } finally {
    await Promise.all([...clients.values()].map((client) => client.end().catch(() => {})));
  }
}
