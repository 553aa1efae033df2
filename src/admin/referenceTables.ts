import type pg from 'pg';
import { listNodes, peerConnectionOf, type NodeRecord } from '../catalog/nodes.js';
import { insertReferenceTable, listReferenceTables, type ReferenceTableRecord } from '../catalog/referenceTables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { listShardedTables } from '../catalog/tables.js';
import { ReshardError, badInput } from '../core/errors.js';
import { assertIdentifierFits } from '../core/identifier.js';
import {
  createReferenceTable as createReferenceTableOnNode, emptyReferenceCopy, guardReferenceCopy, publishReferenceTable, REFERENCE_PUBLICATION,
  referenceSubscriptionName, referenceSyncStates, refreshReferenceSubscription,
} from '../node/referenceTable.js';
import { ensureSubscription, subscriptionExists } from '../node/replication.js';
import { subscriptionWorkerStatus } from '../node/replicationStatus.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import { log } from '../plumbing/log.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';
import { waitFor } from '../plumbing/waitFor.js';

const logger = log('reference');

/** Longest a node's initial copy of the reference tables may take: they are small by definition. */
export const REFERENCE_SYNC_TIMEOUT_MS_DEFAULT = 120_000;

export interface CreateReferenceTableRequest {
  schema?: string;
  name: string;
  definition: string;
  /** The node that takes the writes; default the first active node. */
  holder?: string;
  syncTimeoutMs?: number;
}

/**
 * Creates the table on every node (all in open transactions, committed only
 * when all succeeded, with the catalog row), the write guard on every node
 * but the holder, then publishes it on the holder and subscribes every other
 * node (initial copy by the subscription), and waits until every copy is in
 * sync.
 */
export async function createReferenceTable(access: ClusterAccess, request: CreateReferenceTableRequest): Promise<ReferenceTableRecord> {
  const schema = request.schema ?? 'public';
  assertIdentifierFits(request.name, 'table name');
  if (request.definition.trim().length === 0) throw badInput('the table has no column definition', "pass --columns 'code text PRIMARY KEY, …'");

  const { record, nodes } = await withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    const active = nodes.filter((node) => node.state === 'active');
    if (active.length === 0) throw new ReshardError('precondition', 'the cluster has no active nodes', 'add one with `reshard node add` first');
    const holder = request.holder ?? active[0]!.name;
    if (!active.some((node) => node.name === holder)) {
      throw badInput(`--holder "${holder}" is not an active node`, `use one of: ${active.map((node) => node.name).join(', ')}`);
    }
    const taken = [...await listShardedTables(catalog), ...await listReferenceTables(catalog)];
    if (taken.some((table) => table.schema === schema && table.name === request.name)) {
      throw new ReshardError('conflict', `a table named "${request.name}" already exists in the cluster`, 'choose another name');
    }
    const record: ReferenceTableRecord = { schema, name: request.name, holder, definition: request.definition };
    const clients: pg.Client[] = [];
    try {
      for (const node of nodes) clients.push(await connectNode(node, access.passwords));
      for (const [index, client] of clients.entries()) {
        await beginTransaction(client);
        await createReferenceTableOnNode(client, record);
        if (nodes[index]!.name !== holder) await guardReferenceCopy(client, record, holder);
      }
      await beginTransaction(catalog);
      await insertReferenceTable(catalog, record);
      await commitTransaction(catalog);
      for (const client of clients) await commitTransaction(client);
    } catch (error) {
      await rollbackQuietly(catalog);
      await Promise.all(clients.map((client) => rollbackQuietly(client)));
      throw error;
    } finally {
      await Promise.all(clients.map((client) => client.end().catch(() => {})));
    }
    return { record, nodes };
  });
  await syncReferenceCopies(access, nodes, [record], nodes.filter((node) => node.name !== record.holder), request.syncTimeoutMs);
  return record;
}

/**
 * Brings every given subscriber's copies of `tables` up: the table and its
 * write guard, the holder's publication, one subscription per holder
 * (created, or refreshed to pick up new tables), then waits (bounded, logged)
 * until each table's initial copy is done (pg_subscription_rel 'r').
 * Idempotent: `node add` and `table create --reference` both run it.
 */
export async function syncReferenceCopies(
  access: ClusterAccess, nodes: readonly NodeRecord[], tables: readonly ReferenceTableRecord[], subscribers: readonly NodeRecord[],
  timeoutMs = REFERENCE_SYNC_TIMEOUT_MS_DEFAULT,
): Promise<void> {
  const holders = [...new Set(tables.map((table) => table.holder))];
  for (const holderName of holders) {
    const holder = nodes.find((node) => node.name === holderName);
    if (!holder) throw new ReshardError('precondition', `the holder "${holderName}" of a reference table is not a node of the cluster`, 'run `reshard doctor`');
    const client = await connectNode(holder, access.passwords);
    try {
      for (const table of tables.filter((candidate) => candidate.holder === holderName)) await publishReferenceTable(client, table);
    } finally {
      await client.end().catch(() => {});
    }
  }
  for (const subscriber of subscribers) {
    const client = await connectNode(subscriber, access.passwords);
    try {
      for (const holderName of holders) {
        if (holderName === subscriber.name) continue;
        const holder = nodes.find((node) => node.name === holderName)!;
        const held = tables.filter((table) => table.holder === holderName);
        const name = referenceSubscriptionName(holderName, subscriber.name);
        const subscribed = await subscriptionExists(client, name);
        for (const table of held) {
          await createReferenceTableOnNode(client, table);
          // A new subscription copies every table whole: what a copy held before (a node added again) goes first.
          if (!subscribed) await emptyReferenceCopy(client, table);
          await guardReferenceCopy(client, table, holderName);
        }
        if (subscribed) {
          await refreshReferenceSubscription(client, name);
        } else {
          const password = access.passwords(holderName);
          // The subscriber reaches the holder at its peer address, as a move's target reaches its source.
          await ensureSubscription(client, name, { ...peerConnectionOf(holder), ...(password !== undefined ? { password } : {}) }, REFERENCE_PUBLICATION);
        }
        const wanted = held.map((table) => `${table.schema}.${table.name}`);
        // A copy that fails (a row the copy already had, a table of another shape) is retried by PostgreSQL forever: fail at the first error instead of at the bound.
        const errorsBefore = await syncErrorCount(client, name);
        await waitFor(`the initial copy of reference table(s) ${wanted.join(', ')} from ${holderName} to ${subscriber.name}`, async () => {
          const states = await referenceSyncStates(client, name);
          const pending = wanted.filter((table) => states.get(table) !== 'r');
          if (pending.length === 0) return true;
          if (await syncErrorCount(client, name) > errorsBefore) {
            throw new ReshardError('precondition', `the initial copy of ${pending.join(', ')} from ${holderName} to ${subscriber.name} failed`,
              `read ${subscriber.name}'s server log for the error (${name}), fix it, then run \`reshard doctor --fix\``);
          }
          logger.debug({ subscriber: subscriber.name, holder: holderName, pending }, 'reference copies still syncing');
          return undefined;
        }, { timeoutMs, pollMs: 100, fix: `check the logs of ${subscriber.name} and ${holderName}, then run \`reshard doctor\``, logFields: { subscriber: subscriber.name, holder: holderName } });
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
}

export async function readReferenceTables(access: Pick<ClusterAccess, 'catalog'>): Promise<ReferenceTableRecord[]> {
  return withCatalog(access, (catalog) => listReferenceTables(catalog));
}

async function syncErrorCount(subscriber: pg.ClientBase, name: string): Promise<number> {
  const status = await subscriptionWorkerStatus(subscriber, name);
  return status.syncErrorCount + status.applyErrorCount;
}
