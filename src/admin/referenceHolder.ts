import type pg from 'pg';
import { listNodes, peerConnectionOf, type NodeRecord } from '../catalog/nodes.js';
import { listReferenceTables, setReferenceHolder, type ReferenceTableRecord } from '../catalog/referenceTables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { describeTable } from '../catalog/tables.js';
import { ReshardError, badInput } from '../core/errors.js';
import {
  dropEmptyReferencePublication, dropReferenceSubscription, guardReferenceCopy, publishReferenceTable, referenceSubscriptionName,
  refreshReferenceSubscriptionWithoutCopy, subscribeWithoutCopy, unguardReferenceCopy, unpublishReferenceTable,
} from '../node/referenceTable.js';
import { currentWalLsn, replayedPast, subscriptionConninfo } from '../node/replication.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import { waitFor } from '../plumbing/waitFor.js';
import { assertReferenceCopiesReady } from './referenceCopyCheck.js';

/** Longest the copies may take to replay the old holder's last write. */
const HOLDER_CATCH_UP_TIMEOUT_MS = 60_000;

/**
 * Moves a reference table's holder to another node, with no write lost:
 * the old holder is fenced (its copy refuses writes, naming the new holder),
 * every copy replays the old holder's last write, the table leaves the old
 * holder's publication and joins the new one's, every other node subscribes
 * to the new holder without a copy (all copies are equal at that point), and
 * only then the new holder takes writes and the catalog names it. Writes
 * sent to the old holder in between are refused (RSM03), never lost.
 */
export async function moveReferenceHolder(access: ClusterAccess, request: { schema?: string; name: string; holder: string }): Promise<ReferenceTableRecord> {
  const schema = request.schema ?? 'public';
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const tables = await listReferenceTables(catalog);
    const table = tables.find((candidate) => candidate.schema === schema && candidate.name === request.name);
    if (!table) throw new ReshardError('not_found', `no reference table named "${request.name}"`, `use one of: ${tables.map(describeTable).join(', ') || '(none)'}`);
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    const target = nodes.find((node) => node.name === request.holder && node.state === 'active');
    if (!target) throw badInput(`--holder "${request.holder}" is not an active node`, `use one of: ${nodes.filter((node) => node.state === 'active').map((node) => node.name).join(', ')}`);
    if (table.holder === target.name) return table;
    const source = nodes.find((node) => node.name === table.holder);
    if (!source) throw new ReshardError('precondition', `the holder "${table.holder}" of ${describeTable(table)} is not a node of the cluster`, 'run `reshard doctor`');
    await assertReferenceCopiesReady(access, nodes, [table], nodes.filter((node) => node !== source).map((node) => node.name));

    const clients = new Map<string, pg.Client>();
    try {
      for (const node of nodes) clients.set(node.name, await connectNode(node, access.passwords));
      const client = (node: NodeRecord): pg.Client => clients.get(node.name)!;
      const others = nodes.filter((node) => node !== source);
      // 1. Fence: the old holder's copy refuses writes from here on (CREATE TRIGGER waits for writers in flight).
      await guardReferenceCopy(client(source), table, target.name);
      try {
        const lastWriteLsn = await currentWalLsn(client(source));
        // 2. Every copy has everything the old holder took.
        for (const node of others) {
          const name = referenceSubscriptionName(source.name, node.name);
          await waitFor(`${node.name}'s copy of ${describeTable(table)} to replay ${source.name}'s last write`,
            async () => (await replayedPast(client(source), name, lastWriteLsn)) ? true : undefined,
            { timeoutMs: HOLDER_CATCH_UP_TIMEOUT_MS, pollMs: 50, fix: `check subscription ${name} on ${node.name} (\`reshard doctor\`), then run set-holder again` });
        }
      } catch (error) {
        // Nothing moved yet: the old holder takes writes again. (From step 3 on, running set-holder again completes the move.)
        await unguardReferenceCopy(client(source), table).catch(() => {});
        throw error;
      }
      // 3. The old holder stops publishing it; 4. the new one publishes it and every other node follows the new one, without a copy.
      await unpublishReferenceTable(client(source), table);
      for (const node of others) await refreshReferenceSubscriptionWithoutCopy(client(node), referenceSubscriptionName(source.name, node.name));
      await publishReferenceTable(client(target), table);
      const password = access.passwords(target.name);
      const conninfo = subscriptionConninfo({ ...peerConnectionOf(target), ...(password !== undefined ? { password } : {}) });
      for (const node of nodes.filter((candidate) => candidate !== target)) {
        await subscribeWithoutCopy(client(node), referenceSubscriptionName(target.name, node.name), conninfo);
        await guardReferenceCopy(client(node), table, target.name);
      }
      // 5. Only now the new holder takes writes, and the catalog (routers) names it.
      await unguardReferenceCopy(client(target), table);
      await setReferenceHolder(catalog, table, target.name);
      // 6. An old holder that holds nothing more keeps no subscriptions or publication.
      if (!tables.some((candidate) => candidate !== table && candidate.holder === source.name)) {
        for (const node of others) await dropReferenceSubscription(client(node), referenceSubscriptionName(source.name, node.name));
        await dropEmptyReferencePublication(client(source));
      }
      return { ...table, holder: target.name };
    } finally {
      await Promise.all([...clients.values()].map((opened) => opened.end().catch(() => {})));
    }
  });
}
