import type { NodeRecord } from '../catalog/nodes.js';
import { ReshardError } from '../core/errors.js';
import { measureNodeSpace, type MeasuredSpace } from '../node/diskSpace.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { movesCrossHeadroom, type NodeSpace } from '../planner/headroom.js';

/** Keep this share of every node's capacity free while moving, unless told otherwise. */
export const HEADROOM_FRACTION_DEFAULT = 0.1;

/** What a node may hold: its configured capacity, else (a server on this machine) used + free on its filesystem. */
export function capacityOf(node: Pick<NodeRecord, 'capacityBytes'>, measured: MeasuredSpace): number | undefined {
  return node.capacityBytes ?? (measured.freeBytes === undefined ? undefined : measured.usedBytes + measured.freeBytes);
}

/** A node's space: the configured capacity wins; else, on this machine, used + free of its filesystem. */
export async function measureSpace(node: NodeRecord, passwords: PasswordLookup): Promise<NodeSpace> {
  const client = await connectNode(node, passwords, 'reshard space');
  try {
    const measured = await measureNodeSpace(client, node.connection.host);
    return { name: node.name, usedBytes: measured.usedBytes, capacityBytes: capacityOf(node, measured) };
  } finally {
    await client.end().catch(() => {});
  }
}

export async function measureSpaces(nodes: readonly NodeRecord[], passwords: PasswordLookup): Promise<Map<string, NodeSpace>> {
  const spaces = await Promise.all(nodes.map((node) => measureSpace(node, passwords)));
  return new Map(spaces.map((space) => [space.name, space]));
}

/** Right before moves start copying to `target`: measured again, since the plan may be old. */
export async function assertRoomForMoves(target: NodeRecord, moves: readonly { slot: number; bytesTotal: number }[], passwords: PasswordLookup, headroomFraction: number): Promise<void> {
  const space = await measureSpace(target, passwords);
  const bytes = moves.reduce((sum, move) => sum + move.bytesTotal, 0);
  const slots = moves.map((move) => move.slot);
  const problem = movesCrossHeadroom(slots.length === 1 ? `slot ${slots[0]}` : `slots ${slots.join(', ')}`, bytes, space, headroomFraction);
  if (problem) {
    throw new ReshardError('aborted', `not started: ${problem}`,
      'free space on that node, raise its capacity (`reshard node add … --capacity`), or lower --headroom; then `reshard resume`');
  }
}
