import { formatBytes } from '../core/bytes.js';
import type { Plan, PlanInput } from './types.js';
import { compareNames } from './validatePlanInput.js';
import { slotOwners } from '../core/slotMap.js';

export interface MovementCell {
  slots: number;
  bytes: number;
}

/**
 * Who sends what to whom. `cells[from][to]` over `nodes` (the union of current
 * owners and target nodes, by name): the diagonal is what a node keeps, every
 * other cell what it sends to that node.
 */
export interface MovementMatrix {
  nodes: string[];
  cells: MovementCell[][];
}

export function movementMatrix(input: PlanInput, plan: Plan): MovementMatrix {
  const { slotMap, slotBytes } = input;
  const nodes = [...new Set([...slotOwners(slotMap), ...Object.keys(plan.targetSlotCounts)])].sort(compareNames);
  const indexOf = new Map(nodes.map((name, i) => [name, i]));
  const cells = nodes.map(() => nodes.map(() => ({ slots: 0, bytes: 0 })));
  const add = (from: string, to: string, bytes: number): void => {
    const cell = cells[indexOf.get(from)!]![indexOf.get(to)!]!;
    cell.slots++;
    cell.bytes += bytes;
  };
  const movedSlots = new Set<number>();
  for (const move of plan.moves) {
    movedSlots.add(move.slot);
    add(move.from, move.to, move.bytes);
  }
  slotMap.owners.forEach((owner, slot) => {
    if (owner !== undefined && !movedSlots.has(slot)) add(owner, owner, slotBytes[slot]!);
  });
  return { nodes, cells };
}

/**
 * The matrix as an aligned text table, rows sending to columns:
 * "keep 64 / 2.1 MB" on the diagonal, "send 21 / 700 kB" elsewhere, "-" for
 * nothing. Bytes are left out when no slot has a known size.
 */
export function formatMovementMatrix(matrix: MovementMatrix): string {
  const bytesKnown = matrix.cells.some((row) => row.some((cell) => cell.bytes > 0));
  const describe = (cell: MovementCell, kept: boolean): string => {
    if (cell.slots === 0) return '-';
    const verb = kept ? 'keep' : 'send';
    return bytesKnown ? `${verb} ${cell.slots} / ${formatBytes(cell.bytes)}` : `${verb} ${cell.slots}`;
  };
  const rows: string[][] = [
    ['from \\ to', ...matrix.nodes],
    ...matrix.nodes.map((from, i) => [from, ...matrix.cells[i]!.map((cell, j) => describe(cell, i === j))]),
  ];
  return formatTable(rows);
}

/** Left-aligned columns two spaces apart, no trailing spaces. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((text, i) => (widths[i] = Math.max(widths[i] ?? 0, text.length)));
  return rows.map((row) => row.map((text, i) => text.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}
