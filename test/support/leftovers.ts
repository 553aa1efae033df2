import type { LocalServer } from '../../src/local/localServer.js';
import { isReferenceReplicationName } from '../../src/node/referenceTable.js';
import { reshardReplicationObjects } from '../../src/node/replication.js';
import { connectTo } from './servers.js';

/** reshard's publications, subscriptions and replication slots left on any of `servers` (a reference table's are not leftovers: they live with the table). */
export async function leftoverReplicationObjects(servers: readonly LocalServer[]): Promise<string[]> {
  const leftovers: string[] = [];
  for (const server of servers) {
    const client = await connectTo(server.connection);
    try {
      const objects = await reshardReplicationObjects(client);
      leftovers.push(...[...objects.publications, ...objects.subscriptions, ...objects.slots].filter((name) => !isReferenceReplicationName(name)));
    } finally {
      await client.end();
    }
  }
  return leftovers;
}
