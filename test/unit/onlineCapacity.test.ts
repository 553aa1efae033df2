import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planOnlineCapacity } from '../../src/coordinator/onlineCapacityPlan.js';
import { scheduleOnlineBatches } from '../../src/coordinator/onlineSchedule.js';
import { onlineSettingProblems } from '../../src/coordinator/onlineSettingProblems.js';
import { replicationCapacity } from '../../src/coordinator/replicationCapacity.js';
import type { ReplicationSettings } from '../../src/node/inspectNode.js';
import { NO_APPLY_WORKER_MS_MIN, subscriptionFailure, type SubscriptionObservation } from '../../src/mover/subscriptionHealth.js';

/** PostgreSQL 15's stock settings with wal_level = logical, nothing in use but the launcher. */
const STOCK: ReplicationSettings = {
  serverVersionNum: 150000, walLevel: 'logical',
  maxReplicationSlots: 10, replicationSlotsUsed: 0, maxWalSenders: 10, walSendersUsed: 0,
  maxLogicalReplicationWorkers: 4, logicalWorkersUsed: 0, maxWorkerProcesses: 8, backgroundWorkersUsed: 1, launcherRuns: true,
  walRetrieveRetryIntervalMs: 5_000, superuser: true, replicationRole: true, createSubscriptionGranted: false,
};

/** The README's example: 256 slots, 3 → 4 nodes, 64 slots into n4, about 21 from each old node. */
function growMoves(): { slot: number; source: string; target: string }[] {
  return Array.from({ length: 64 }, (_, index) => ({ slot: index * 4 + 3, source: `n${(index % 3) + 1}`, target: 'n4' }));
}

describe('online capacity of a node (pure)', () => {
  it('stock PostgreSQL 15 takes 4 subscriptions into a node and feeds 8 batches (2 copying) out of one', () => {
    expect(replicationCapacity(STOCK, 2)).toEqual({
      subscriptionsMax: 4, subscriptionsBoundBy: 'max_logical_replication_workers',
      publicationsMax: 8, publicationsBoundBy: 'max_wal_senders', copiesMax: 2,
    });
  });

  it('counts what others use, and a launcher that is not running yet', () => {
    const busy = replicationCapacity({ ...STOCK, logicalWorkersUsed: 3, backgroundWorkersUsed: 4, replicationSlotsUsed: 9 }, 2);
    expect(busy.subscriptionsMax).toBe(1);
    expect(busy.publicationsMax).toBe(1);
    const noLauncher = replicationCapacity({ ...STOCK, maxWorkerProcesses: 3, backgroundWorkersUsed: 0, launcherRuns: false }, 2);
    expect(noLauncher).toMatchObject({ subscriptionsMax: 2, subscriptionsBoundBy: 'max_worker_processes' });
  });

  it('the README example on stock settings: 6 batches become 3 (one per pair), within n4\'s 4 workers, in one round', () => {
    const settings = new Map(['n1', 'n2', 'n3', 'n4'].map((name) => [name, STOCK]));
    const plan = planOnlineCapacity(growMoves(), 16, settings, () => 2);
    expect(plan.rounds).toHaveLength(1);
    expect(plan.rounds[0]).toHaveLength(3);
    expect(plan.load.find((load) => load.node === 'n4')).toMatchObject({ subscriptionsAtOnce: 3, subscriptionsMax: 4 });
    // Tuned settings keep the 16-slot batches: 2 per pair, 6 into n4.
    const tuned = new Map(['n1', 'n2', 'n3', 'n4'].map((name) => [name, { ...STOCK, maxLogicalReplicationWorkers: 8, maxWorkerProcesses: 16 }]));
    expect(planOnlineCapacity(growMoves(), 16, tuned, () => 2).rounds[0]).toHaveLength(6);
  });

  it('refuses a target without workers with the setting, the value and the command', () => {
    const problems = onlineSettingProblems('n4', { ...STOCK, maxLogicalReplicationWorkers: 0 }, { subscriptionsWanted: 6, publicationsWanted: 0, concurrencyMax: 2 });
    const error = problems.find((problem) => problem.severity === 'error');
    expect(error?.check).toBe('logical_workers');
    expect(error?.message).toBe('node "n4" can start no apply worker for an online move into it (max_logical_replication_workers = 0, 0 in use by others); 6 subscription(s) at once need it');
    expect(error?.fix).toBe('ALTER SYSTEM SET max_logical_replication_workers = 6; on "n4", then restart it (the setting takes effect only at server start), or use --mode offline');
  });

  it('refuses a source with one replication slot taken, naming max_replication_slots', () => {
    const problems = onlineSettingProblems('n1', { ...STOCK, maxReplicationSlots: 1, replicationSlotsUsed: 1 }, { subscriptionsWanted: 0, publicationsWanted: 2, concurrencyMax: 2 });
    expect(problems.filter((problem) => problem.severity === 'error')).toEqual([expect.objectContaining({
      check: 'replication_slots',
      fix: 'ALTER SYSTEM SET max_replication_slots = 3; on "n1", then restart it (the setting takes effect only at server start), or use --mode offline',
    })]);
  });

  it('only warns, with the command, when a node takes fewer batches than the plan would like', () => {
    const problems = onlineSettingProblems('n4', STOCK, { subscriptionsWanted: 6, publicationsWanted: 0, concurrencyMax: 2 });
    expect(problems.map((problem) => [problem.severity, problem.check])).toEqual([['warning', 'logical_workers'], ['warning', 'wal_retrieve_retry_interval']]);
    expect(problems[0]!.fix).toContain('ALTER SYSTEM SET max_logical_replication_workers = 6;');
    expect(problems[1]!.fix).toContain('SELECT pg_reload_conf()');
  });

  const settingsArbitrary: fc.Arbitrary<ReplicationSettings> = fc.record({
    maxLogicalReplicationWorkers: fc.integer({ min: 0, max: 12 }),
    logicalWorkersUsed: fc.integer({ min: 0, max: 12 }),
    maxWorkerProcesses: fc.integer({ min: 0, max: 20 }),
    otherBackgroundWorkers: fc.integer({ min: 0, max: 6 }),
    launcherRuns: fc.boolean(),
    maxReplicationSlots: fc.integer({ min: 0, max: 16 }),
    replicationSlotsUsed: fc.integer({ min: 0, max: 16 }),
    maxWalSenders: fc.integer({ min: 0, max: 16 }),
    walSendersUsed: fc.integer({ min: 0, max: 16 }),
  }).map((drawn) => ({
    ...STOCK, ...drawn,
    backgroundWorkersUsed: drawn.logicalWorkersUsed + drawn.otherBackgroundWorkers + (drawn.launcherRuns ? 1 : 0),
  }));

  it('for any settings, no round keeps more batches alive on a node than it has workers, slots and WAL senders for', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ source: fc.constantFrom('a', 'b', 'c', 'd'), target: fc.constantFrom('a', 'b', 'c', 'd', 'e') }), { minLength: 1, maxLength: 80 }),
      fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', 'e'), settingsArbitrary, { minKeys: 5, maxKeys: 5 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 6 }),
      (pairs, settingsByNode, batchSlotsMax, concurrencyMax) => {
        const moves = pairs.filter((pair) => pair.source !== pair.target).map((pair, slot) => ({ ...pair, slot }));
        if (moves.length === 0) return;
        const settings = new Map(Object.entries(settingsByNode));
        const plan = planOnlineCapacity(moves, batchSlotsMax, settings, () => concurrencyMax);
        if (plan.problems.some((problem) => problem.severity === 'error')) {
          expect(plan.rounds).toEqual([]);
          // Refused only for a node that truly cannot carry one batch in a role it has.
          const refused = plan.problems.filter((problem) => problem.severity === 'error' && (problem.check === 'logical_workers' || problem.check === 'replication_slots'));
          for (const problem of refused) {
            const capacity = replicationCapacity(settings.get(problem.node)!, concurrencyMax);
            expect(problem.check === 'logical_workers' ? capacity.subscriptionsMax : capacity.publicationsMax).toBe(0);
          }
          return;
        }
        // Every move is in exactly one batch; a batch is one source → target pair.
        const slots = plan.rounds.flat(2).map((move) => move.slot).sort((x, y) => x - y);
        expect(slots).toEqual(moves.map((move) => move.slot));
        for (const round of plan.rounds) {
          const into = new Map<string, number>();
          const from = new Map<string, number>();
          for (const batch of round) {
            expect(new Set(batch.map((move) => JSON.stringify([move.source, move.target]))).size).toBe(1);
            into.set(batch[0]!.target, (into.get(batch[0]!.target) ?? 0) + 1);
            from.set(batch[0]!.source, (from.get(batch[0]!.source) ?? 0) + 1);
          }
          for (const [node, count] of into) {
            const node_ = settings.get(node)!;
            // Apply workers: within max_logical_replication_workers and max_worker_processes after others' use.
            expect(node_.logicalWorkersUsed + count).toBeLessThanOrEqual(node_.maxLogicalReplicationWorkers);
            expect(node_.backgroundWorkersUsed + (node_.launcherRuns ? 0 : 1) + count).toBeLessThanOrEqual(node_.maxWorkerProcesses);
          }
          for (const [node, count] of from) {
            const node_ = settings.get(node)!;
            const copies = plan.load.find((load) => load.node === node)!.copiesMax;
            expect(node_.replicationSlotsUsed + count).toBeLessThanOrEqual(node_.maxReplicationSlots);
            expect(node_.walSendersUsed + count + copies).toBeLessThanOrEqual(node_.maxWalSenders);
          }
        }
      },
    ), { numRuns: 500 });
  });

  it('keeps the batches an interrupted run opened as they were, in the first round', () => {
    const moves = Array.from({ length: 20 }, (_, slot) => ({ slot, source: 'a', target: 'b' }));
    // Opened with 4 workers free as 2 batches of 10; now 8 are free and fresh chunking would cut 4 of 5.
    const rounds = scheduleOnlineBatches(moves, 5, () => ({ subscriptionsMax: 8, publicationsMax: 8 }), [[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]]);
    expect(rounds).toHaveLength(1);
    expect(rounds[0]![0]!.map((move) => move.slot)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    expect(rounds[0]!.slice(1).flat().map((move) => move.slot).sort((x, y) => x - y)).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    expect(rounds[0]!.slice(1).every((batch) => batch.length <= 5)).toBe(true);
  });

  it('runs batches in turns only where one per pair does not fit', () => {
    // Five sources into one target that takes two subscriptions at once: three rounds.
    const moves = Array.from({ length: 10 }, (_, slot) => ({ slot, source: `s${slot % 5}`, target: 't' }));
    const rounds = scheduleOnlineBatches(moves, 16, (node) => (node === 't' ? { subscriptionsMax: 2, publicationsMax: 9 } : { subscriptionsMax: 4, publicationsMax: 9 }));
    expect(rounds.map((round) => round.length)).toEqual([2, 2, 1]);
  });
});

describe('a subscription that cannot make progress (pure)', () => {
  const healthy: SubscriptionObservation = {
    subscription: 'reshard_m3_s17', targetName: 'n4', sourceName: 'n1',
    target: {
      exists: true, enabled: true, workerPid: undefined, applyErrorCount: 0, syncErrorCount: 0,
      maxLogicalReplicationWorkers: 4, logicalWorkersUsed: 4, reshardSubscriptionsWithoutWorker: 2,
      maxWorkerProcesses: 8, backgroundWorkersUsed: 5, walRetrieveRetryIntervalMs: 5_000,
    },
    slot: { exists: true, active: false, lost: false, maxWalSenders: 10, walSendersUsed: 3 },
    errorsAtStart: { apply: 0, sync: 0 },
    notStreamingMs: 0,
  };

  it('waits for a worker while the launcher may still start one, then names the full worker slots and the fix', () => {
    expect(subscriptionFailure({ ...healthy, notStreamingMs: NO_APPLY_WORKER_MS_MIN - 1 })).toBeUndefined();
    const error = subscriptionFailure({ ...healthy, notStreamingMs: NO_APPLY_WORKER_MS_MIN });
    expect(error?.line()).toBe('the subscription reshard_m3_s17 on node "n4" has no apply worker after 15 s (max_logical_replication_workers = 4, 4 in use): '
      + 'the server is out of logical replication worker slots. Fix: ALTER SYSTEM SET max_logical_replication_workers = 6; on "n4" and restart it '
      + '(or stop what else uses its workers), then `reshard resume` (the move was rolled back)');
  });

  it('waits three retry intervals when the launcher retries slower than 5 s', () => {
    expect(subscriptionFailure({ ...healthy, target: { ...healthy.target, walRetrieveRetryIntervalMs: 10_000 }, notStreamingMs: 20_000 })).toBeUndefined();
  });

  it('fails at once on new apply errors, a disabled subscription or a lost slot', () => {
    const running = { ...healthy, target: { ...healthy.target, workerPid: 42 }, slot: { ...healthy.slot, active: true } };
    expect(subscriptionFailure(running)).toBeUndefined();
    expect(subscriptionFailure({ ...running, target: { ...running.target, applyErrorCount: 2 }, errorsAtStart: { apply: 2, sync: 0 } })).toBeUndefined();
    expect(subscriptionFailure({ ...running, target: { ...running.target, applyErrorCount: 3 }, errorsAtStart: { apply: 2, sync: 0 } })?.message).toMatch(/apply_error_count = 3/);
    expect(subscriptionFailure({ ...running, target: { ...running.target, enabled: false } })?.message).toMatch(/subenabled = false/);
    expect(subscriptionFailure({ ...running, slot: { ...running.slot, exists: false, active: false } })?.message).toMatch(/replication slot reshard_m3_s17 on node "n1" is gone/);
  });

  it('names the source\'s WAL senders when a worker runs but never streams', () => {
    const stuck = { ...healthy, target: { ...healthy.target, workerPid: 42, logicalWorkersUsed: 1 }, notStreamingMs: NO_APPLY_WORKER_MS_MIN };
    expect(subscriptionFailure({ ...stuck, notStreamingMs: NO_APPLY_WORKER_MS_MIN - 1 })).toBeUndefined();
    expect(subscriptionFailure({ ...stuck, slot: { ...stuck.slot, walSendersUsed: 10 } })?.line()).toMatch(
      /has not streamed from node "n1" for 15 s \(max_wal_senders = 10, 10 in use there\): the source is out of WAL senders\. Fix: ALTER SYSTEM SET max_wal_senders = 11; on "n1" and restart it/);
    expect(subscriptionFailure(stuck)?.message).toMatch(/its replication slot there stays inactive/);
  });
});
