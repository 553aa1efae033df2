import { assert } from '../core/assert.js';
import { formatBytes } from '../core/bytes.js';
import type { Plan, PlannedMove } from './types.js';

/** What a node holds and may hold, as measured (or configured) before a migration. */
export interface NodeSpace {
  name: string;
  /** Bytes the node's databases use now (including leaves that moves will later drop). */
  usedBytes: number;
  /** Bytes it may use in all: the configured capacity, or used + free on its filesystem; unknown when neither is known. */
  capacityBytes: number | undefined;
}

export interface HeadroomRule {
  /** Share of each node's capacity that must stay free at every moment of the migration (0.1 = 10 %). */
  headroomFraction: number;
  /** WAL a source may retain while its moves are open (the migration stops past it): room a sender must have. */
  walRetainedBytesMax: number;
}

export interface DeferredMove extends PlannedMove {
  reason: string;
}

/**
 * Keeps the moves that fit (pure). A receiving node's peak is what it holds
 * now plus every slot it receives (the senders drop theirs only after the
 * switch); a sending node's peak is what it holds plus the WAL it may retain
 * while its moves are open. A move is kept only while its target's peak
 * stays under capacity × (1 − headroom), in plan order (smallest slots
 * first); a sender without room for its retained WAL starts none of its
 * moves. Nodes of unknown capacity are not limited. Every move left out
 * says why.
 */
export function applyHeadroom(plan: Plan, spaces: ReadonlyMap<string, NodeSpace>, rule: HeadroomRule): { plan: Plan; deferred: DeferredMove[] } {
  assert(rule.headroomFraction >= 0 && rule.headroomFraction < 1, 'headroom is a fraction in [0, 1)');
  const limitOf = (space: NodeSpace | undefined): number | undefined =>
    space?.capacityBytes === undefined ? undefined : space.capacityBytes * (1 - rule.headroomFraction);
  const percent = `${Math.round(rule.headroomFraction * 100)} %`;
  const incomingByNode = new Map<string, number>();
  const kept: PlannedMove[] = [];
  const deferred: DeferredMove[] = [];
  for (const move of plan.moves) {
    const source = spaces.get(move.from);
    const sourceLimit = limitOf(source);
    if (source && sourceLimit !== undefined && source.usedBytes + rule.walRetainedBytesMax > source.capacityBytes!) {
      deferred.push({ ...move, reason: `${move.from} holds ${formatBytes(source.usedBytes)} of ${formatBytes(source.capacityBytes!)} and has no room for the ${formatBytes(rule.walRetainedBytesMax)} of WAL a move may retain (--max-wal-retained)` });
      continue;
    }
    const target = spaces.get(move.to);
    const targetLimit = limitOf(target);
    const incoming = (incomingByNode.get(move.to) ?? 0) + move.bytes;
    if (target && targetLimit !== undefined && target.usedBytes + incoming > targetLimit) {
      deferred.push({ ...move, reason: `${move.to} would hold ${formatBytes(target.usedBytes + incoming)} of ${formatBytes(target.capacityBytes!)}, leaving less than the ${percent} headroom` });
      continue;
    }
    incomingByNode.set(move.to, incoming);
    kept.push(move);
  }
  const waves = new Set(kept.map((move) => move.wave)).size;
  return {
    plan: { ...plan, moves: kept, slotsMoved: kept.length, bytesMoved: kept.reduce((sum, move) => sum + move.bytes, 0), waves },
    deferred,
  };
}

/** Moves about to start (`what`: "slot 3"): does their target still have room, measured now? The reason when it does not. */
export function movesCrossHeadroom(what: string, bytes: number, target: NodeSpace, headroomFraction: number): string | undefined {
  if (target.capacityBytes === undefined) return undefined;
  const limit = target.capacityBytes * (1 - headroomFraction);
  if (target.usedBytes + bytes <= limit) return undefined;
  return `${what} (${formatBytes(bytes)}) would bring ${target.name} to ${formatBytes(target.usedBytes + bytes)} of ${formatBytes(target.capacityBytes)}, ` +
    `leaving less than the ${Math.round(headroomFraction * 100)} % headroom`;
}

/** Nodes of unknown capacity among `spaces`, by name: the headroom rule cannot protect them. */
export function capacityUnknown(spaces: Iterable<NodeSpace>): string[] {
  return [...spaces].filter((space) => space.capacityBytes === undefined).map((space) => space.name).sort();
}

/**
 * Said wherever headroom would apply (plan, rebalance, doctor), never
 * silently skipped: a remote node's free space cannot be measured, so
 * without a configured capacity the headroom rule does nothing for it.
 */
export function capacityUnknownWarning(names: readonly string[], headroomFraction: number): { message: string; fix: string } {
  const nodes = names.join(', ');
  const plural = names.length > 1;
  return {
    message: `the capacity of ${nodes} is unknown (${plural ? 'servers' : 'a server'} not on this machine and no --capacity given): ` +
      `the ${Math.round(headroomFraction * 100)} % disk headroom is not checked on ${plural ? 'them' : 'it'}, so a move could fill ${plural ? 'their disks' : 'its disk'}`,
    fix: `give ${plural ? 'each' : 'it'} a capacity: ${names.map((name) => `\`reshard node set ${name} --capacity 500GB\``).join(', ')} (the size of ${plural ? 'their disks' : 'its disk'}; or \`node add … --capacity\` when adding a node)`,
  };
}
