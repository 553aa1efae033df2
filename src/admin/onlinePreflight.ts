import type { NodeRecord } from '../catalog/nodes.js';
import { capacityError, planOnlineCapacity, type NodeOnlineLoad } from '../coordinator/onlineCapacityPlan.js';
import { readNodesReplicationSettings, readOpenedBatches } from '../coordinator/replicationCapacity.js';
import { BATCH_SLOTS_MAX_DEFAULT } from '../coordinator/runMigration.js';
import type { PasswordLookup } from '../plumbing/connectNode.js';

// The judgement itself lives with the coordinator, which applies it again when a migration starts.
export { onlineSettingProblems, WAL_RETRIEVE_RETRY_INTERVAL_MS_MAX, type OnlineNeed, type SettingProblem } from '../coordinator/onlineSettingProblems.js';

/** What the preflight found an online plan will keep alive at once on each node, within its limits. */
export interface OnlinePreflight {
  /** Settings that work but cost time, one line each with the command that helps. */
  warnings: string[];
  load: NodeOnlineLoad[];
  /** Rounds the batches take turns in (1 when every node carries all its batches at once). */
  rounds: number;
  /** Each slot's batch (numbered from 1 over all rounds) and round (from 1), as the coordinator forms them from the same moves in the same order. */
  batchOfSlot: ReadonlyMap<number, { batch: number; round: number }>;
}

/**
 * Checks, before a migration is recorded (or resumed), that every node taking
 * part can carry the plan's online moves: what they keep alive at once on
 * each node — apply workers into a target, replication slots and WAL senders
 * out of a source, counting what others already use — is sized within the
 * node's settings. A node that cannot carry even one batch is refused with the
 * setting, the value it needs and the command; fewer than the plan would like
 * is a warning, and the coordinator runs the batches in turns.
 */
export async function assertOnlineReady(
  nodes: readonly NodeRecord[],
  passwords: PasswordLookup,
  moves: readonly { source: string; target: string; slot: number }[],
  resumed?: { prefix: string; tables: readonly { name: string }[]; modulus: number },
): Promise<OnlinePreflight> {
  const involved = nodes.filter((node) => moves.some((move) => move.source === node.name || move.target === node.name));
  const settings = await readNodesReplicationSettings(involved, passwords, resumed?.prefix);
  // A resume keeps the batches its interrupted run opened, as the coordinator will.
  const opened = resumed
    ? await readOpenedBatches(involved.filter((node) => moves.some((move) => move.source === node.name)), passwords, resumed.prefix, resumed.tables, resumed.modulus)
    : [];
  const plan = planOnlineCapacity(moves, BATCH_SLOTS_MAX_DEFAULT, settings, (name) => nodes.find((node) => node.name === name)?.concurrencyMax ?? 1, opened.map((batch) => batch.slots));
  const error = capacityError(plan);
  if (error) throw error;
  const batchOfSlot = new Map<number, { batch: number; round: number }>();
  let batch = 0;
  plan.rounds.forEach((round, roundIndex) => {
    for (const chunk of round) {
      batch++;
      for (const move of chunk) batchOfSlot.set(move.slot, { batch, round: roundIndex + 1 });
    }
  });
  return { warnings: plan.problems.map((problem) => `${problem.message}; ${problem.fix}`), load: plan.load, rounds: plan.rounds.length, batchOfSlot };
}
