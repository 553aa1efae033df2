import { databaseIdentityKey, describeDatabaseIdentity, sameDatabase } from '../catalog/nodeIdentity.js';
import { listNodes, type DatabaseIdentity, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { hasSlot, slotIds, slotModulus } from '../core/slotMap.js';
import { attachedSlotModuli, exchangeLeftovers } from '../node/splitLeaves.js';
import { describeTable, listShardedTables } from '../catalog/tables.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { readDatabaseIdentity } from '../node/databaseIdentity.js';
import { connectNode } from '../plumbing/connectNode.js';
import { fencedLeaves } from '../node/fence.js';
import { attachedSlots, standaloneLeaves } from '../node/slotPartitions.js';
import { tableRowCount } from '../node/tableRowCount.js';
import { listReferenceTables } from '../catalog/referenceTables.js';
import { checkReferenceCopies } from './referenceCopyCheck.js';

export interface VerifyReport {
  ok: boolean;
  epoch: number;
  problems: string[];
  rowsByTable: Record<string, number>;
  rowsTotal: number;
  /** Rows of each reference table on its holder (every copy is compared with it). */
  referenceRowsByTable: Record<string, number>;
}

/**
 * Checks the invariants against what the nodes hold: every slot of every
 * table is attached on exactly its owner and nowhere else, no staging or
 * fence leftovers, and counts the rows. Every copy of every reference table
 * is compared with its holder's (rows and checksum) and its subscription checked.
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
      if (state !== undefined && state !== 'active') problems.push(`slot ${slot} is ${state} in the slot map`);
    });
    const attachedBy = new Map<string, Map<number, string[]>>();
    const attachedModuli = new Map<string, Map<number, number>>();
    const identities = new Map<string, DatabaseIdentity>();
    await Promise.all(nodes.map(async (node: NodeRecord) => {
      const client = await connectNode(node, access.passwords);
      try {
        identities.set(node.name, await readDatabaseIdentity(client, `node "${node.name}"`));
        for (const table of tables) {
          const key = describeTable(table);
          const slots = await attachedSlots(client, table);
          const perSlot = attachedBy.get(key) ?? new Map<number, string[]>();
          attachedBy.set(key, perSlot);
          for (const slot of slots.keys()) perSlot.set(slot, [...(perSlot.get(slot) ?? []), node.name]);
          for (const stray of await standaloneLeaves(client, table)) problems.push(`node ${node.name}: ${stray} is a leftover staging table (not attached)`);
          for (const stray of await exchangeLeftovers(client, table)) problems.push(`node ${node.name}: ${stray} is left over from a split or merge`);
          const moduli = attachedModuli.get(key) ?? new Map<number, number>();
          attachedModuli.set(key, moduli);
          for (const [slot, modulus] of await attachedSlotModuli(client, table)) moduli.set(slot, modulus);
          // Counted before the sum is read: the nodes are counted concurrently.
          const rows = await tableRowCount(client, table.schema, table.name);
          rowsByTable[key] = (rowsByTable[key] ?? 0) + rows;
          for (const fenced of await fencedLeaves(client, table)) {
            if (fenced.attached) problems.push(`node ${node.name}: ${fenced.leaf} is still fenced`);
          }
        }
      } finally {
        await client.end().catch(() => {});
      }
    }));
    problems.push(...identityProblems(nodes, identities));
    for (const table of tables) {
      const key = describeTable(table);
      const perSlot = attachedBy.get(key) ?? new Map<number, string[]>();
      for (const slot of slotIds(slotMap)) {
        const holders = perSlot.get(slot) ?? [];
        const owner = slotMap.owners[slot]!;
        if (holders.length !== 1 || holders[0] !== owner) {
          problems.push(`${key} slot ${slot}: owner is ${owner} but attached on ${holders.length ? holders.join(', ') : 'no node'}`);
        }
        const attachedModulus = attachedModuli.get(key)?.get(slot);
        if (holders.length > 0 && attachedModulus !== slotModulus(slotMap, slot)) {
          problems.push(`${key} slot ${slot}: modulus ${slotModulus(slotMap, slot)} in the slot map but attached with modulus ${attachedModulus}`);
        }
      }
      for (const [slot, holders] of perSlot) {
        if (!hasSlot(slotMap, slot)) problems.push(`${key}: a leaf of remainder ${slot} is attached on ${holders.join(', ')}, but the slot map has no slot ${slot}`);
      }
    }
    const references = await checkReferenceCopies(access, nodes, await listReferenceTables(catalog), { compareRows: true });
    problems.push(...references.problems.map((problem) => problem.message));
    const rowsTotal = Object.values(rowsByTable).reduce((sum, rows) => sum + rows, 0);
    return { ok: problems.length === 0, epoch: slotMap.epoch, problems, rowsByTable, rowsTotal, referenceRowsByTable: references.rowsByTable };
  });
}

/**
 * Invariant 7, read live from the nodes (the catalog's columns can be stale
 * after a DNS change): no two nodes reach one database, and each reaches the
 * database recorded for it. Two names for one database also make every
 * other check here see each of its leaves twice.
 */
function identityProblems(nodes: readonly NodeRecord[], identities: ReadonlyMap<string, DatabaseIdentity>): string[] {
  const problems: string[] = [];
  const namesByDatabase = new Map<string, string[]>();
  for (const node of nodes) {
    const identity = identities.get(node.name);
    if (!identity) continue;
    if (node.identity && !sameDatabase(node.identity, identity)) {
      problems.push(`node ${node.name} now reaches another database (${describeDatabaseIdentity(identity)}) than the one recorded for it (${describeDatabaseIdentity(node.identity)})`);
    }
    const key = databaseIdentityKey(identity);
    namesByDatabase.set(key, [...(namesByDatabase.get(key) ?? []), node.name]);
  }
  for (const names of namesByDatabase.values()) {
    if (names.length < 2) continue;
    const identity = identities.get(names[0]!)!;
    problems.push(`nodes ${names.join(' and ')} are the same database (${describeDatabaseIdentity(identity)}): its leaves and rows are counted once per name, and a move between them would drop the only copy (\`reshard doctor\` says which name to keep)`);
  }
  return problems;
}
