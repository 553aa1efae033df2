import { assert } from '../core/assert.js';
import type { ChosenMove } from './chooseMoves.js';
import type { PlannedMove } from './types.js';

/**
 * The fewest waves any schedule can have: a node in d moves with limit c needs
 * at least ⌈d/c⌉ waves.
 */
export function wavesLowerBound(moves: readonly ChosenMove[], concurrencyMaxOf: (node: string) => number): number {
  let wavesMin = 0;
  for (const [node, degree] of movesPerNode(moves)) {
    wavesMin = Math.max(wavesMin, Math.ceil(degree / concurrencyMaxOf(node)));
  }
  return wavesMin;
}

/**
 * Puts moves into waves so that in no wave a node is the source or target of
 * more than its concurrencyMax moves, using exactly the lower bound of waves.
 *
 * Why that is reachable: in a minimal plan every node only sends or only
 * receives, so moves form a bipartite multigraph. Split each node with d moves
 * and limit c into min(c, d) copies, dealing its moves round robin; every copy
 * then has at most ⌈d/c⌉ moves, and König's theorem colours the edges of a
 * bipartite multigraph with its maximum degree — one colour per wave, each copy
 * in at most one move per wave, so each node in at most c.
 */
export function scheduleWaves(
  moves: readonly ChosenMove[],
  concurrencyMaxOf: (node: string) => number,
): { moves: PlannedMove[]; waves: number } {
  const sources = new Set(moves.map((m) => m.from));
  for (const move of moves) {
    assert(!sources.has(move.to), `node "${move.to}" both sends and receives slots`);
  }
  const wavesCount = wavesLowerBound(moves, concurrencyMaxOf);
  const ordered = [...moves].sort((a, b) => a.slot - b.slot);

  // Vertex per node copy; ends[e] = [source copy, target copy] of move e.
  const degreeByNode = movesPerNode(ordered);
  const vertexIdByCopy = new Map<string, number>();
  const dealtByNode = new Map<string, number>();
  const copyVertex = (node: string): number => {
    const copies = Math.min(concurrencyMaxOf(node), degreeByNode.get(node)!);
    const dealt = dealtByNode.get(node) ?? 0;
    dealtByNode.set(node, dealt + 1);
    const key = `${dealt % copies}:${node}`;
    let id = vertexIdByCopy.get(key);
    if (id === undefined) {
      id = vertexIdByCopy.size;
      vertexIdByCopy.set(key, id);
    }
    return id;
  };
  const ends = ordered.map((move) => [copyVertex(move.from), copyVertex(move.to)] as const);

  // edgeAt[v].get(colour) = the move of that colour at vertex v.
  const edgeAt = Array.from({ length: vertexIdByCopy.size }, () => new Map<number, number>());
  const colourOf = new Array<number>(ordered.length).fill(-1);
  const freeColour = (v: number): number => {
    for (let c = 0; c < wavesCount; c++) if (!edgeAt[v]!.has(c)) return c;
    assert(false, `vertex ${v} has no free wave`);
  };
  const setColour = (e: number, c: number): void => {
    colourOf[e] = c;
    edgeAt[ends[e]![0]]!.set(c, e);
    edgeAt[ends[e]![1]]!.set(c, e);
  };

  ends.forEach(([u, v], e) => {
    const a = freeColour(u);
    const b = freeColour(v);
    if (edgeAt[v]!.has(a)) {
      // Swap a and b along the path from v that alternates a, b, a, …; it cannot
      // reach u (bipartite, and a is free at u), and afterwards a is free at v.
      const path: number[] = [];
      let at = v;
      let colour = a;
      for (let next = edgeAt[at]!.get(colour); next !== undefined; next = edgeAt[at]!.get(colour)) {
        path.push(next);
        const [x, y] = ends[next]!;
        at = at === x ? y : x;
        colour = colour === a ? b : a;
        assert(path.length <= ordered.length, 'alternating path does not end');
      }
      for (const p of path) {
        edgeAt[ends[p]![0]]!.delete(colourOf[p]!);
        edgeAt[ends[p]![1]]!.delete(colourOf[p]!);
      }
      for (const p of path) setColour(p, colourOf[p] === a ? b : a);
    }
    assert(!edgeAt[u]!.has(a) && !edgeAt[v]!.has(a), 'wave colouring broke');
    setColour(e, a);
  });

  const planned = ordered.map((move, e) => ({ ...move, wave: colourOf[e]! }));
  planned.sort((x, y) => x.wave - y.wave || x.slot - y.slot);
  return { moves: planned, waves: wavesCount };
}

function movesPerNode(moves: readonly ChosenMove[]): Map<string, number> {
  const degreeByNode = new Map<string, number>();
  for (const move of moves) {
    degreeByNode.set(move.from, (degreeByNode.get(move.from) ?? 0) + 1);
    degreeByNode.set(move.to, (degreeByNode.get(move.to) ?? 0) + 1);
  }
  return degreeByNode;
}
