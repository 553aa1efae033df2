import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServers, type TestServers } from '../support/servers.js';
import { EXCHANGE_MOVERS, formatMatrix, runFaultCell, STEPS, victimsOf, type CellResult, type FaultCell, type Mover } from './faultCell.js';

/**
 * The fault matrix (issue 4, item 2): every journal step of both movers ×
 * every victim. `npm run test:faults` runs all of it (RESHARD_FAULTS=all);
 * `npm test` runs one cell per victim, spread over both movers and the
 * riskiest steps. RESHARD_FAULTS=online:freeze:source,… picks cells by hand;
 * RESHARD_FAULTS=split runs the cells of `reshard split` (issue 14); split-all,
 * merge and split-to those of `split --all`, `merge` and `split --to` (one
 * migration on two nodes: its cells also stop the target); exchange all four.
 */
const ALL: FaultCell[] = (['online', 'offline', ...EXCHANGE_MOVERS] as Mover[]).flatMap((mover) =>
  STEPS[mover].flatMap((step) => victimsOf(mover).map((victim) => ({ mover, step, victim }))));

const REPRESENTATIVE: FaultCell[] = [
  { mover: 'online', step: 'freeze', victim: 'coordinator' },
  { mover: 'online', step: 'stream', victim: 'target' },
  { mover: 'offline', step: 'copy', victim: 'source' },
  { mover: 'online', step: 'sync', victim: 'net-cut' },
  { mover: 'offline', step: 'attach', victim: 'net-stall' },
  { mover: 'online', step: 'switch', victim: 'rollback' },
];

function selectedCells(): FaultCell[] {
  const wanted = process.env['RESHARD_FAULTS'];
  if (!wanted) return REPRESENTATIVE;
  if (wanted === 'all') return ALL;
  if ((EXCHANGE_MOVERS as readonly string[]).includes(wanted)) return ALL.filter((cell) => cell.mover === wanted);
  if (wanted === 'exchange') return ALL.filter((cell) => EXCHANGE_MOVERS.includes(cell.mover));
  return wanted.split(',').map((spec) => {
    const [mover, step, victim] = spec.trim().split(':');
    const cell = ALL.find((candidate) => candidate.mover === mover && candidate.step === step && candidate.victim === victim);
    if (!cell) throw new Error(`RESHARD_FAULTS: no cell ${spec} (mover:step:victim)`);
    return cell;
  });
}

const results: CellResult[] = [];
let servers: TestServers | undefined;

describe('fault matrix: a fault at every step, then resume', () => {
  beforeAll(async () => {
    // Servers here crash on purpose: the applications' commits must survive a crash (fsync may stay off,
    // the OS does not crash), or a lost acknowledged write would be the test's doing, not reshard's.
    servers = await startTestServers(4, 'f', { synchronous_commit: 'on' });
  });
  afterAll(async () => {
    await servers?.stop();
    const seconds = results.reduce((sum, result) => sum + result.seconds, 0);
    process.stdout.write(`\n${formatMatrix(results)}\n(${results.length} cells in ${seconds.toFixed(0)} s)\n`);
  });

  selectedCells().forEach((cell, index) => {
    it(`${cell.mover}:${cell.step} × ${cell.victim}`, async () => {
      const result = await runFaultCell(cell, servers!.servers, `fault_cell_${index + 1}`);
      results.push(result);
      process.stdout.write(`${result.ok ? 'pass' : 'FAIL'} ${cell.mover}:${cell.step} × ${cell.victim} (${result.seconds.toFixed(1)} s) — ${result.notes.join('; ')}\n`
        + result.problems.map((problem) => `    ${problem}\n`).join(''));
      expect(result.problems).toEqual([]);
    }, 300_000);
  });
});
