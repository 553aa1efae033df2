import { assert } from '../core/assert.js';

/** What a node allows at once, for scheduling: see `replicationCapacity`. */
export interface NodeBatchLimits {
  /** Subscriptions alive at once with this node as their target. */
  subscriptionsMax: number;
  /** Publications (replication slots) alive at once with this node as their source. */
  publicationsMax: number;
}

export const UNLIMITED_BATCHES: NodeBatchLimits = { subscriptionsMax: Number.POSITIVE_INFINITY, publicationsMax: Number.POSITIVE_INFINITY };

/** Batches alive at once on one node, by role. */
export interface NodeBatchCounts {
  subscriptions: number;
  publications: number;
}

/**
 * Groups online moves into batches (moves between the same two nodes share a
 * publication and a subscription, up to `batchSlotsMax` slots, evenly) and the
 * batches into rounds (pure). A batch's subscription and replication slot live
 * from its stream to its cleanup, and a round's batches are all alive at once,
 * so no round holds more batches on a node than `limitsOf` that node allows.
 * Where a node allows fewer batches than the pairs would make, its pairs get
 * fewer, bigger batches first (every new subscription costs a worker start);
 * only where even one batch per pair does not fit do the batches take turns
 * in several rounds. Every node taking part must allow at least one.
 *
 * `opened`: the slots of batches an interrupted run opened (their publication
 * exists). They stay batches as they are, in the first round: their objects
 * are alive already, and cutting them differently would stream a slot twice.
 */
export function scheduleOnlineBatches<M extends { source: string; target: string; slot: number }>(
  moves: readonly M[],
  batchSlotsMax: number,
  limitsOf: (node: string) => NodeBatchLimits,
  opened: readonly (readonly number[])[] = [],
): M[][][] {
  assert(Number.isSafeInteger(batchSlotsMax) && batchSlotsMax >= 1, 'batchSlotsMax is a whole number ≥ 1');
  // In the moves' own order, as the run that opened them cut them.
  const openedBatches = opened.map((slots) => moves.filter((move) => slots.includes(move.slot))).filter((batch) => batch.length > 0);
  const inOpened = new Set(openedBatches.flat().map((move) => move.slot));
  const byPair = new Map<string, M[]>();
  for (const move of moves) {
    if (inOpened.has(move.slot)) continue;
    const key = JSON.stringify([move.source, move.target]);
    byPair.set(key, [...(byPair.get(key) ?? []), move]);
  }
  const pairsInto = new Map<string, number>();
  const pairsFrom = new Map<string, number>();
  for (const pairMoves of [...openedBatches, ...byPair.values()]) {
    const { source, target } = pairMoves[0]!;
    pairsInto.set(target, (pairsInto.get(target) ?? 0) + 1);
    pairsFrom.set(source, (pairsFrom.get(source) ?? 0) + 1);
  }
  for (const [target] of pairsInto) assert(limitsOf(target).subscriptionsMax >= 1, `node ${target} allows a subscription`);
  for (const [source] of pairsFrom) assert(limitsOf(source).publicationsMax >= 1, `node ${source} allows a publication`);

  const batches: M[][] = [];
  for (const pairMoves of byPair.values()) {
    const { source, target } = pairMoves[0]!;
    const chunksWanted = Math.ceil(pairMoves.length / batchSlotsMax);
    const chunksRoom = Math.min(
      Math.floor(limitsOf(target).subscriptionsMax / pairsInto.get(target)!),
      Math.floor(limitsOf(source).publicationsMax / pairsFrom.get(source)!),
    );
    const chunks = Math.max(1, Math.min(chunksWanted, chunksRoom));
    const chunkSize = Math.ceil(pairMoves.length / chunks);
    for (let first = 0; first < pairMoves.length; first += chunkSize) batches.push(pairMoves.slice(first, first + chunkSize));
  }

  const rounds: { batches: M[][]; counts: Map<string, NodeBatchCounts> }[] = [];
  for (const batch of [...openedBatches, ...batches]) {
    const { source, target } = batch[0]!;
    const fits = (counts: Map<string, NodeBatchCounts>): boolean =>
      (counts.get(target)?.subscriptions ?? 0) < limitsOf(target).subscriptionsMax && (counts.get(source)?.publications ?? 0) < limitsOf(source).publicationsMax;
    let round = openedBatches.includes(batch) && rounds.length > 0 ? rounds[0] : rounds.find((candidate) => fits(candidate.counts));
    if (!round) {
      round = { batches: [], counts: new Map() };
      rounds.push(round);
    }
    round.batches.push(batch);
    const targetCounts = round.counts.get(target) ?? { subscriptions: 0, publications: 0 };
    round.counts.set(target, { ...targetCounts, subscriptions: targetCounts.subscriptions + 1 });
    const sourceCounts = round.counts.get(source) ?? { subscriptions: 0, publications: 0 };
    round.counts.set(source, { ...sourceCounts, publications: sourceCounts.publications + 1 });
  }
  return rounds.map((round) => round.batches);
}

/** The most batches alive at once on each node over the rounds, by role. */
export function batchesAtOnce<M extends { source: string; target: string }>(rounds: readonly (readonly (readonly M[])[])[]): Map<string, NodeBatchCounts> {
  const most = new Map<string, NodeBatchCounts>();
  for (const round of rounds) {
    const counts = new Map<string, NodeBatchCounts>();
    for (const batch of round) {
      const { source, target } = batch[0]!;
      const t = counts.get(target) ?? { subscriptions: 0, publications: 0 };
      counts.set(target, { ...t, subscriptions: t.subscriptions + 1 });
      const s = counts.get(source) ?? { subscriptions: 0, publications: 0 };
      counts.set(source, { ...s, publications: s.publications + 1 });
    }
    for (const [node, count] of counts) {
      const before = most.get(node) ?? { subscriptions: 0, publications: 0 };
      most.set(node, { subscriptions: Math.max(before.subscriptions, count.subscriptions), publications: Math.max(before.publications, count.publications) });
    }
  }
  return most;
}
