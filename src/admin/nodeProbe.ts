import type pg from 'pg';
import type { NodeRecord } from '../catalog/nodes.js';
import type { ShardedTableRecord } from '../catalog/tables.js';
import { capacityOf } from '../coordinator/nodeSpaces.js';
import { measureNodeSpace } from '../node/diskSpace.js';
import { slotOfAnyLeafName } from '../node/leafName.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { reshardReplicationStreams } from '../node/replicationStatus.js';
import { slotSizesOnNode } from '../node/slotStats.js';

/** What the dashboard measured on one node. */
export interface NodeMeasurement {
  reachable: boolean;
  /** Bytes of the slots attached there, all sharded tables (heap, indexes, TOAST). */
  bytes: number;
  bytesBySlot: Map<number, number>;
  /** What the server's databases use, and what it may use: the configured capacity, else (a server on this machine) used + free on its filesystem. */
  space: { usedBytes: number; capacityBytes: number | undefined } | undefined;
  measuredAt: number;
}


/**
 * One long-lived connection per node, opened on first use and dropped on
 * error (the next probe reconnects): the dashboard measures sizes every few
 * seconds and replication lag every second, and must not open a session each time.
 */
export class NodeProbe {
  private readonly clients = new Map<string, pg.Client>();

  constructor(private readonly passwords: PasswordLookup) {}

  private async client(node: NodeRecord): Promise<pg.Client> {
    const open = this.clients.get(node.name);
    if (open) return open;
    const client = await connectNode(node, this.passwords, 'reshard dashboard');
    this.clients.set(node.name, client);
    return client;
  }

  private async withClient<T>(node: NodeRecord, work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await this.client(node);
    try {
      return await work(client);
    } catch (error) {
      this.clients.delete(node.name);
      await client.end().catch(() => {});
      throw error;
    }
  }

  async measure(node: NodeRecord, tables: readonly ShardedTableRecord[]): Promise<NodeMeasurement> {
    try {
      return await this.withClient(node, async (client) => {
        const bytesBySlot = new Map<number, number>();
        for (const table of tables) {
          for (const [slot, bytes] of await slotSizesOnNode(client, table)) bytesBySlot.set(slot, (bytesBySlot.get(slot) ?? 0) + bytes);
        }
        let bytes = 0;
        for (const slotBytes of bytesBySlot.values()) bytes += slotBytes;
        const measured = await measureNodeSpace(client, node.connection.host);
        return { reachable: true, bytes, bytesBySlot, space: { usedBytes: measured.usedBytes, capacityBytes: capacityOf(node, measured) }, measuredAt: Date.now() };
      });
    } catch {
      return { reachable: false, bytes: 0, bytesBySlot: new Map(), space: undefined, measuredAt: Date.now() };
    }
  }

  /** Replication lag of every reshard stream leaving `source`, by slot and by stream name. */
  async lagBySlot(source: NodeRecord): Promise<{ bySlot: Map<number, number>; byStream: Map<string, number> }> {
    const bySlot = new Map<number, number>();
    const byStream = new Map<string, number>();
    try {
      await this.withClient(source, async (client) => {
        for (const stream of await reshardReplicationStreams(client)) {
          if (stream.lagBytes === undefined) continue;
          byStream.set(stream.name, stream.lagBytes);
          for (const leaf of stream.leaves) {
            const slot = slotOfAnyLeafName(leaf);
            if (slot !== undefined) bySlot.set(slot, stream.lagBytes);
          }
        }
      });
    } catch {
      // An unreachable source shows as unknown lag; the size probe reports the node down.
    }
    return { bySlot, byStream };
  }

  /** Forgets nodes that left the catalog. */
  retain(names: ReadonlySet<string>): void {
    for (const [name, client] of this.clients) {
      if (names.has(name)) continue;
      this.clients.delete(name);
      void client.end().catch(() => {});
    }
  }

  async close(): Promise<void> {
    const clients = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
  }
}
