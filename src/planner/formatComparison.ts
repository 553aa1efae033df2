import { formatBytes } from '../core/bytes.js';
import type { Comparison } from './compareStrategies.js';
import { formatMovementMatrix, formatTable } from './movementMatrix.js';

/** What `reshard plan --compare` prints: the three strategies side by side, then who sends what to whom. */
export function formatComparison(c: Comparison): string {
  const { range, modulo, slots } = c.strategies;
  const bytesKnown = c.matrix.cells.some((row) => row.some((cell) => cell.bytes > 0));
  const data = (bytes: number): string => (bytesKnown ? formatBytes(bytes) : '-');
  const table = formatTable([
    ['strategy', 'moves', 'data', 'how'],
    ['range', percent(range.moved_fraction), data(range.moved_bytes), range.description],
    ['modulo', percent(modulo.moved_fraction), data(modulo.moved_bytes), modulo.description],
    ['slots', percent(slots.moved_fraction), data(slots.moved_bytes), `${slots.description} (${slots.slots_moved} of ${c.slot_count} slots move)`],
    ['ideal', percent(slots.ideal_fraction), '', 'the least any scheme must move to give every node exactly its weighted share of the data'],
  ]);
  return [
    `${c.nodes_before.length} → ${c.nodes_after.length} nodes, ${c.slot_count} slots`,
    `  before: ${c.nodes_before.join(', ')}`,
    `  after:  ${c.nodes_after.join(', ')}`,
    '',
    table,
    '',
    'slot movement (rows send to columns):',
    formatMovementMatrix(c.matrix),
  ].join('\n');
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)} %`;
}
