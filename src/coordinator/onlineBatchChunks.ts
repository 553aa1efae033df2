/**
 * How online moves are grouped into batches: per (source, target) pair, in
 * even chunks of at most `batchSlotsMax` slots (while one batch switches and
 * cleans up, the next one copies). Pure, so `rebalance --dry-run` shows the
 * batches the coordinator will run.
 */
export function chunkMovesByPair<T>(moves: readonly T[], pairOf: (move: T) => readonly [string, string], batchSlotsMax: number): T[][] {
  const byPair = new Map<string, T[]>();
  for (const move of moves) {
    const key = JSON.stringify(pairOf(move));
    byPair.set(key, [...(byPair.get(key) ?? []), move]);
  }
  const chunked: T[][] = [];
  for (const pairMoves of byPair.values()) {
    const chunks = Math.ceil(pairMoves.length / batchSlotsMax);
    const chunkSize = Math.ceil(pairMoves.length / chunks);
    for (let first = 0; first < pairMoves.length; first += chunkSize) chunked.push(pairMoves.slice(first, first + chunkSize));
  }
  return chunked;
}
