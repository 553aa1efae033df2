import type pg from 'pg';
import { listMoves } from '../catalog/migrationRuns.js';
import { listNodes, peerConnectionOf, type NodeRecord } from '../catalog/nodes.js';
import type { Queryable } from '../plumbing/queryable.js';
import { describeConnection } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { probePeerConnection } from '../node/probePeerConnection.js';

/** What a peer check needs of a node: its name, the coordinator's address and the one its peers use. */
export type PeerEndpoint = Pick<NodeRecord, 'name' | 'connection' | 'peerConnection'>;

/** One direction of replication: `subscriber` streams from `publisher`. */
export interface ReplicationPair {
  subscriber: PeerEndpoint;
  publisher: PeerEndpoint;
}

/** Both directions between `node` and each of `others`: who may stream to or from it. */
export function pairsWith(node: PeerEndpoint, others: readonly PeerEndpoint[]): ReplicationPair[] {
  return others.filter((other) => other.name !== node.name)
    .flatMap((other) => [{ subscriber: other, publisher: node }, { subscriber: node, publisher: other }]);
}

/** The endpoint without passwords: they come from the lookup, by node name. */
export function withoutPasswords(node: PeerEndpoint): PeerEndpoint {
  return {
    name: node.name,
    connection: { ...node.connection, password: undefined },
    ...(node.peerConnection ? { peerConnection: { ...node.peerConnection, password: undefined } } : {}),
  };
}

/** The distinct (target subscribes to source) pairs of a plan's moves. */
export function replicationPairsOf(plan: { moves: readonly { from: string; to: string }[] }, nodes: readonly PeerEndpoint[]): ReplicationPair[] {
  const byName = new Map(nodes.map((node) => [node.name, node]));
  const keys = new Set(plan.moves.map((move) => JSON.stringify([move.to, move.from])));
  return [...keys].map((key) => JSON.parse(key) as [string, string])
    .map(([to, from]) => ({ subscriber: byName.get(to)!, publisher: byName.get(from)! }))
    .filter((pair) => pair.subscriber !== undefined && pair.publisher !== undefined);
}

/** Every ordered pair of distinct nodes. */
export function allPairs(nodes: readonly PeerEndpoint[]): ReplicationPair[] {
  return nodes.flatMap((subscriber) => nodes.filter((publisher) => publisher.name !== subscriber.name).map((publisher) => ({ subscriber, publisher })));
}

/**
 * Proves, for every pair, that the subscriber's server connects to the
 * publisher's peer address as the move's subscription will (from the
 * subscriber's machine, with the publisher's params and password). Refuses
 * with the first failing pair and the fix `peerAddressFix` gives for its
 * publisher. A subscriber whose user may not create subscriptions is not
 * probed: the settings preflight reports that; it returns as a warning.
 */
export async function assertPeersReachable(pairs: readonly ReplicationPair[], passwords: PasswordLookup,
  peerAddressFix: (publisher: string) => string | undefined = () => undefined): Promise<string[]> {
  const warnings: string[] = [];
  const bySubscriber = new Map<string, ReplicationPair[]>();
  for (const pair of pairs) bySubscriber.set(pair.subscriber.name, [...(bySubscriber.get(pair.subscriber.name) ?? []), pair]);
  for (const subscriberPairs of bySubscriber.values()) {
    const subscriber = subscriberPairs[0]!.subscriber;
    const client: pg.Client = await connectNode(subscriber, passwords, 'reshard peer probe');
    try {
      for (const { publisher } of subscriberPairs) {
        const password = passwords(publisher.name);
        const address = peerConnectionOf(publisher);
        const result = await probePeerConnection(client, { ...address, ...(password !== undefined ? { password } : {}) });
        if (result.reachable) continue;
        if (result.privilege) {
          warnings.push(`node "${subscriber.name}" cannot create subscriptions, so its connection to node "${publisher.name}" was not checked (${result.reason})`);
          continue;
        }
        throw new ReshardError('unreachable',
          `node "${subscriber.name}" cannot reach node "${publisher.name}" at ${describeConnection(address)} for replication (${result.reason})`,
          `${peerAddressFix(publisher.name) ?? `record an address of "${publisher.name}" that its peers reach: \`reshard node set ${publisher.name} --peer-url URL\``}` +
          `; the subscription connects from the server of "${subscriber.name}", not from here`);
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
  return warnings;
}

/**
 * Before a migration is resumed: the pairs of its moves that have not
 * started yet (those will make new subscriptions) must reach each other.
 */
export async function assertPendingMovesReachable(catalog: Queryable, migrationId: number, passwords: PasswordLookup): Promise<string[]> {
  const pending = (await listMoves(catalog, migrationId)).filter((move) => move.state === 'pending');
  if (pending.length === 0) return [];
  const nodes = await listNodes(catalog, { includeRemoved: true });
  return assertPeersReachable(replicationPairsOf({ moves: pending.map((move) => ({ from: move.source, to: move.target })) }, nodes), passwords);
}
