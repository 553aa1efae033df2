import type pg from 'pg';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { describeTable, listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { quoteQualified } from '../core/identifier.js';
import { withCatalog, type ClusterAccess } from '../coordinator/catalogAccess.js';
import { connectNode } from '../node/nodeAccess.js';
import { attachedSlots } from '../node/slotPartitions.js';

export interface VerifyReport {
  ok: boolean;
  epoch: number;
  problems: string[];
  rowsByTable: Record<string, number>;
  rowsTotal: number;
}

/** Tables on a node that look like reshard leaves but are attached to nothing: staging leftovers. */
async function strayLeaves(client: pg.ClientBase, table: ShardedTableRecord): Promise<string[]> {
  const result = await client.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname ~ ('^' || $2 || '_s[0-9]+$') AND NOT c.relispartition`,
    [table.schema, table.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')],
  );
  return result.rows.map((row) => row.relname);
}

/**
 * Checks the invariants against what the nodes hold: every slot of every
 * table is attached on exactly its owner and nowhere else, no staging or
 * fence leftovers, and counts the rows.
 */
export async function verifyCluster(access: ClusterAccess): Promise<VerifyReport> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const nodes = await listNodes(catalog);
    const tables = await listShardedTables(catalog);
    const slotMap = await readSlotMap(catalog);
    const problems: string[] = [];
    const rowsByTable: Record<string, number> = {};
    slotMap.states.forEach((state, slot) => {
      if (state !== 'active') problems.push(`slot ${slot} is ${state} in the slot map`);
    });
    const attachedBy = new Map<string, Map<number, string[]>>();
    await Promise.all(nodes.map(async (node: NodeRecord) => {
      const client = await connectNode(node, access.passwords);
      try {
        for (const table of tables) {
          const key = describeTable(table);
          const slots = await attachedSlots(client, table);
          const perSlot = attachedBy.get(key) ?? new Map<number, string[]>();
          attachedBy.set(key, perSlot);
          for (const slot of slots.keys()) perSlot.set(slot, [...(perSlot.get(slot) ?? []), node.name]);
          for (const stray of await strayLeaves(client, table)) problems.push(`node ${node.name}: ${stray} is a leftover staging table (not attached)`);
          const counted = await client.query<{ rows: string }>(`SELECT count(*)::text AS rows FROM ${quoteQualified(table.schema, table.name)}`);
          rowsByTable[key] = (rowsByTable[key] ?? 0) + Number(counted.rows[0]!.rows);
          const fenced = await client.query<{ relname: string }>(
            `SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = to_regclass($1) AND t.tgname LIKE 'reshard_fence%'`,
            [quoteQualified(table.schema, table.name)],
          );
          for (const row of fenced.rows) problems.push(`node ${node.name}: ${row.relname} is still fenced`);
        }
      } finally {
        await client.end().catch(() => {});
      }
    }));
    for (const table of tables) {
      const key = describeTable(table);
      const perSlot = attachedBy.get(key) ?? new Map<number, string[]>();
      for (let slot = 0; slot < slotMap.modulus; slot++) {
        const holders = perSlot.get(slot) ?? [];
        const owner = slotMap.owners[slot]!;
        if (holders.length !== 1 || holders[0] !== owner) {
          problems.push(`${key} slot ${slot}: owner is ${owner} but attached on ${holders.length ? holders.join(', ') : 'no node'}`);
        }
      }
    }
    const rowsTotal = Object.values(rowsByTable).reduce((sum, rows) => sum + rows, 0);
    return { ok: problems.length === 0, epoch: slotMap.epoch, problems, rowsByTable, rowsTotal };
  });
}
