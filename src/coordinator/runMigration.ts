import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { finishMigration, getMigration, holdMigration, listMoves, type MoveRecord } from '../catalog/migrationRuns.js';
import { listNodes, setNodeState, type NodeRecord } from '../catalog/nodes.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { listShardedTables } from '../catalog/tables.js';
import { listReferenceTables } from '../catalog/referenceTables.js';
import { assert } from '../core/assert.js';
import { errorText, ReshardError } from '../core/errors.js';
import { assertDistinctDatabases } from '../mover/assertDistinctDatabases.js';
import { OFFLINE_MOVE_STEPS, type OfflineMoveContext } from '../mover/offlineSteps.js';
import type { MoveStep } from '../mover/moveStep.js';
import { MoveRolledBack } from '../mover/moveRolledBack.js';
import { ONLINE_LIMITS_DEFAULT, OnlineBatchRun, type OnlineBatch, type OnlineBatchResult, type OnlineLimits } from '../mover/onlineBatch.js';
import { migrationReplicationPrefix } from '../node/replication.js';
import { dropReferenceSubscriptionsOf } from './dropReferenceSubscriptionsOf.js';
import { NodeLimiter } from './nodeLimiter.js';
import { runWithNodeLimits } from './runWithNodeLimits.js';
import { runMove } from '../mover/runMove.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import { connectNode } from '../plumbing/connectNode.js';
import type { SlotTable } from '../node/slotPartitions.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { runBounded } from './runBounded.js';
import { catalogControlRecord, CONTROL_LIMITS_DEFAULT, isCancellation, MigrationCheckpoint, type ControlLimits } from './migrationCheckpoint.js';
import { ByteProgressRecorder } from './recordProgress.js';
import { serialQueries } from '../plumbing/serialQueries.js';
import { CopyThrottle } from './copyThrottle.js';
import { guardLatency, LATENCY_GUARD_DEFAULT } from './latencyGuard.js';
import { assertRoomForMoves, HEADROOM_FRACTION_DEFAULT } from './nodeSpaces.js';
import { REPLICATION_WATCH_DEFAULT, watchReplication } from './replicationWatch.js';
import { capacityError, planOnlineCapacity } from './onlineCapacityPlan.js';
import { readNodesReplicationSettings, readOpenedBatches } from './replicationCapacity.js';
import { noteMoveNodes } from '../catalog/journalLog.js';
import { loggingSink } from './logEvents.js';


export interface MigrationRunOptions {
  access: ClusterAccess;
  emit: MigrationEventSink;
  /** Moves in flight at once across the cluster (the plan's waves bound each node). */
  moveConcurrencyMax: number;
  resumed?: boolean;
  onlineLimits?: OnlineLimits;
  /** Online mode: most slots one publication/subscription carries. */
  batchSlotsMax?: number;
  /** How pause and cancel requests are followed. */
  controlLimits?: ControlLimits;
  /** Copy pacing and the replication bounds that hold or stop copying. */
  throttle?: ThrottleOptions;
  /** Share of each target's capacity that must stay free; checked again right before moves start. */
  headroomFraction?: number;
}

export interface ThrottleOptions {
  copyBytesPerSecMax?: number;
  lagBytesMax?: number;
  walRetainedBytesMax?: number;
  holdMsMax?: number;
  /** Keep the routers' p99 on the slots not moving within this factor of the baseline before the migration, by slowing the copies. */
  maxLatencyImpact?: number;
}

/** How long copying may stay held for a lagging subscription before the migration gives up. */
export const COPY_HOLD_MS_MAX_DEFAULT = 30 * 60_000;

export const BATCH_SLOTS_MAX_DEFAULT = 16;

export interface MigrationSummary {
  migrationId: number;
  state: 'completed' | 'failed' | 'cancelled';
  slotsMoved: number;
  bytesMoved: number;
  rowsMoved: number;
  seconds: number;
  /** Online moves: each switched slot's write pause (freeze → switch), in ms. */
  pausesMs: number[];
  /** Bytes the copies streamed in this run (COPY format, smaller than the slots on disk). */
  bytesStreamed: number;
  error?: string;
}

/**
 * The online moves as batches in rounds, fitted to what every node allows at
 * once as it is now (another preflight, since settings and others' use can
 * change between `rebalance` and the run or a `resume`). A node that cannot
 * carry even one batch fails the migration before anything is opened.
 */
async function onlineRounds(
  migrationId: number, moves: readonly MoveRecord[], nodes: Map<string, NodeRecord>, tables: SlotTable[], modulus: number, batchSlotsMax: number, passwords: ClusterAccess['passwords'],
): Promise<{ rounds: OnlineBatch[][]; copiesMaxOf: (node: string) => number }> {
  const involved = [...nodes.values()].filter((node) => moves.some((move) => move.source === node.name || move.target === node.name));
  const prefix = migrationReplicationPrefix(migrationId);
  const sources = involved.filter((node) => moves.some((move) => move.source === node.name));
  const [settings, opened] = await Promise.all([readNodesReplicationSettings(involved, passwords, prefix), readOpenedBatches(sources, passwords, prefix, tables, modulus)]);
  const plan = planOnlineCapacity(moves, batchSlotsMax, settings, (name) => nodes.get(name)?.concurrencyMax ?? 1, opened.map((batch) => batch.slots));
  const error = capacityError(plan);
  if (error) throw error;
  const copiesMax = new Map(plan.load.map((load) => [load.node, load.copiesMax]));
  const rounds = plan.rounds.map((round) => round.map((chunk) => {
    const source = nodes.get(chunk[0]!.source);
    const target = nodes.get(chunk[0]!.target);
    assert(source && target, 'batch nodes are in the catalog');
    // Named by its first slot (unique within the migration); a batch an interrupted run opened keeps its name.
    const name = opened.find((batch) => batch.slots.includes(chunk[0]!.slot))?.name ?? `${prefix}s${chunk[0]!.slot}`;
    return { migrationId, name, source, target, moves: chunk, modulus, tables };
  }));
  return { rounds, copiesMaxOf: (node) => copiesMax.get(node) ?? 1 };
}

/**
 * The online rounds one after the other: a round's batches are all alive at
 * once (every node allows that many), and a round ends with their cleanup,
 * which frees the workers, slots and WAL senders the next one takes.
 */
async function runOnlineRounds(
  rounds: readonly (readonly OnlineBatch[])[],
  shared: OnlineShared,
  options: MigrationRunOptions,
): Promise<{ failure: unknown; switched: OnlineBatchResult['switched'] }> {
  const switched: OnlineBatchResult['switched'] = [];
  for (const round of rounds) {
    const outcome = await runOnlineBatches(round, shared, options);
    switched.push(...outcome.switched);
    if (outcome.failure !== undefined) return { failure: outcome.failure, switched };
  }
  return { failure: undefined, switched };
}

interface OnlineShared {
  access: ClusterAccess;
  emit: MigrationEventSink;
  nodes: Map<string, NodeRecord>;
  throttle: CopyThrottle;
  checkpoint: MigrationCheckpoint;
  /** Initial copies a node may serve at once as a source (each holds a WAL sender). */
  copiesMaxOf: (node: string) => number;
}

/**
 * One round's batches: every batch streams (copy + catch-up, under per-node
 * limits) and cuts over (each source one cutover at a time, at most
 * CUTOVERS_AT_ONCE_MAX at once), then cleans up. With `cutoverWhileCopying`
 * a batch cuts over as soon as it has caught up, while other batches still
 * copy: the cutovers no longer form a serial tail after the last copy.
 * Without it every copy ends first, and a freeze never competes with a bulk
 * COPY for the CPU. A source's cleanups begin once every batch from it has
 * cut over. The first failure stops new work; every opened batch then rolls
 * back its unswitched slots.
 */
async function runOnlineBatches(
  batches: readonly OnlineBatch[],
  shared: OnlineShared,
  options: MigrationRunOptions,
): Promise<{ failure: unknown; switched: OnlineBatchResult['switched'] }> {
  const chosenLimits = options.onlineLimits ?? ONLINE_LIMITS_DEFAULT;
  // Under a latency bound, one copy stream per batch: the guard's rate cap is shared anyway, and every
  // lane is a burst of CPU on both nodes at each resume.
  const limits = options.throttle?.maxLatencyImpact === undefined ? chosenLimits : { ...chosenLimits, copyLanes: 1 };
  const migrationId = batches[0]?.migrationId;
  const runs: OnlineBatchRun[] = [];
  const clients: pg.Client[] = [];
  let failure: unknown;
  const stopOnFailure = <T>(work: Promise<T>): Promise<T> => work.catch((error: unknown) => {
    failure ??= error;
    throw error;
  });
  const nodesOf = (batch: OnlineBatch): string[] => [batch.source.name, batch.target.name];
  const limitOf = (name: string): number => Math.min(shared.nodes.get(name)?.concurrencyMax ?? 1, shared.copiesMaxOf(name));
  const stopWatch = migrationId === undefined ? async () => {} : watchReplication({
    migrationId,
    prefix: migrationReplicationPrefix(migrationId),
    sources: [...new Set(batches.map((batch) => batch.source.name))].map((name) => shared.nodes.get(name)!),
    passwords: shared.access.passwords,
    throttle: shared.throttle,
    limits: {
      lagBytesMax: options.throttle?.lagBytesMax ?? REPLICATION_WATCH_DEFAULT.lagBytesMax,
      walRetainedBytesMax: options.throttle?.walRetainedBytesMax ?? REPLICATION_WATCH_DEFAULT.walRetainedBytesMax,
      pollMs: REPLICATION_WATCH_DEFAULT.pollMs,
    },
    emit: shared.emit,
  });
  /** Cleanups of batches whose every slot switched, begun while other batches still cut over (or copy). */
  const cleanups = new Map<OnlineBatchRun, Promise<OnlineBatchResult>>();
  /** Per source, its batches not cut over yet. */
  const cuttingOverFrom = new Map<string, number>();
  for (const batch of batches) cuttingOverFrom.set(batch.source.name, (cuttingOverFrom.get(batch.source.name) ?? 0) + 1);
  // Cutovers of batches on different sources may overlap; each node takes one at a time.
  const cutoverTurns = new NodeLimiter(() => 1, CUTOVERS_AT_ONCE_MAX);
  const cuttingOver: Promise<void>[] = [];
  const cutOverInTurn = (run: OnlineBatchRun): void => {
    const source = run.batch.source.name;
    const turn = cutoverTurns.run([source], async () => {
      if (failure !== undefined) return;
      await stopOnFailure(shared.checkpoint.pass().then(() => run.cutOver()));
      // Every slot of this batch has switched: its cleanup is owed whatever happens to the other batches
      // (invariant 5; a cancel is too late for it, a pause still holds), and it need not wait for the
      // cutovers of other sources — the cleanup tail no longer follows the last switch. It waits for its
      // own source's: dropping the old leaves takes the source's parents ACCESS EXCLUSIVE, and router
      // calls queued behind that lock kept a router's lease report from reaching that source, so a
      // fence there waited its settling bound (1 s, seen at a 5 ms round trip).
      cuttingOverFrom.set(source, cuttingOverFrom.get(source)! - 1);
      if (cuttingOverFrom.get(source)! > 0) return;
      for (const done of runs.filter((candidate) => candidate.batch.source.name === source)) {
        const cleanup = shared.checkpoint.pass({ cancellable: false }).then(() => done.cleanUp());
        cleanup.catch((error: unknown) => { failure ??= error; });
        cleanups.set(done, cleanup);
      }
    });
    cuttingOver.push(turn.catch(() => {}));
  };
  try {
    await runWithNodeLimits(batches, nodesOf, limitOf, options.moveConcurrencyMax, (batch) => stopOnFailure((async () => {
      // A batch an interrupted run began is opened anyway: only its run can roll it back.
      await shared.checkpoint.pass({ cancellable: batch.moves.every((move) => move.state === 'pending') });
      const starting = batch.moves.filter((move) => move.state === 'pending');
      const open = async (connect: () => Promise<pg.Client>): Promise<pg.Client> => {
        const client = await connect();
        clients.push(client);
        return client;
      };
      // The sessions at once, each a new server process (26 ms apiece on the VM we measure on), and the target's room
      // checked meanwhile (opening sessions changes nothing). All settle before a failure is thrown, so that none
      // opens after the batch's sessions are ended.
      const [room, ...opening] = await Promise.allSettled([
        starting.length > 0 ? assertRoomForMoves(batch.target, starting, shared.access.passwords, options.headroomFraction ?? HEADROOM_FRACTION_DEFAULT) : Promise.resolve(),
        open(() => connectNode(batch.source, shared.access.passwords, 'reshard mover')),
        open(() => connectNode(batch.target, shared.access.passwords, 'reshard mover')),
        open(() => connectCatalog(shared.access, 'reshard mover')),
      ]);
      if (room.status === 'rejected') throw room.reason;
      const [source, target, catalog] = opening.map((opened) => {
        if (opened.status === 'rejected') throw opened.reason;
        return opened.value;
      }) as [pg.Client, pg.Client, pg.Client];
      const connections = { source, target, catalog };
      await assertDistinctDatabases(connections.catalog, { node: batch.source, session: connections.source }, { node: batch.target, session: connections.target });
      const run = await OnlineBatchRun.open(batch, connections, { emit: shared.emit, limits, passwords: shared.access.passwords, copyGate: shared.throttle });
      runs.push(run);
      await run.stream();
      if (limits.cutoverWhileCopying) cutOverInTurn(run);
    })()), () => failure !== undefined);
    // Copies are over: nothing left to hold.
    await stopWatch();
    if (!limits.cutoverWhileCopying && failure === undefined) for (const run of runs) cutOverInTurn(run);
    await Promise.all(cuttingOver);
    // Every slot has switched: a cancel is too late, cleanup is owed (invariant 5); a pause still holds.
    if (failure === undefined) await shared.checkpoint.pass({ cancellable: false }).catch((error: unknown) => { failure ??= error; });
    const switched: OnlineBatchResult['switched'] = [];
    await Promise.all(runs.map(async (run) => {
      try {
        const begun = cleanups.get(run);
        if (begun) {
          switched.push(...(await begun).switched);
          return;
        }
        if (failure === undefined) {
          switched.push(...(await run.cleanUp()).switched);
          return;
        }
        const rolledBack = (await run.rollBack(failure)) instanceof MoveRolledBack;
        for (const move of run.batch.moves.filter((candidate) => !run.hasSwitched(candidate.slot))) {
          shared.emit({ type: 'move_failed', migrationId: move.migrationId, slot: move.slot, source: move.source, target: move.target, error: errorText(failure), rolledBack });
        }
        switched.push(...run.results().switched);
      } catch (error) {
        failure ??= error;
      }
    }));
    return { failure, switched };
  } finally {
    await stopWatch();
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
  }
}

/**
 * Cutovers of different batches at once (each source one at a time). Three overlapped the 64 cutovers
 * of the 256-slot bench better (1.9 s instead of 2.6–3.0 s) but pushed the client-seen pause p99 to
 * 60 ms and over on 2 cores; two keep it near 10–40 ms.
 */
const CUTOVERS_AT_ONCE_MAX = 2;

async function executeMove(
  move: MoveRecord,
  shared: { access: ClusterAccess; nodes: Map<string, NodeRecord>; tables: SlotTable[]; modulus: number; steps: readonly MoveStep<OfflineMoveContext>[]; emit: MigrationEventSink; throttle: CopyThrottle; headroomFraction: number },
): Promise<{ bytes: number; rows: number }> {
  const source = shared.nodes.get(move.source);
  const target = shared.nodes.get(move.target);
  assert(source && target, `nodes of slot ${move.slot}'s move are in the catalog`);
  const opened: pg.Client[] = [];
  const open = async (connect: () => Promise<pg.Client>): Promise<pg.Client> => {
    const client = await connect();
    opened.push(client);
    return client;
  };
  const started = Date.now();
  try {
    if (move.state === 'pending') await assertRoomForMoves(target, [move], shared.access.passwords, shared.headroomFraction);
    const context: OfflineMoveContext = {
      migrationId: move.migrationId,
      slot: move.slot,
      modulus: shared.modulus,
      sourceName: move.source,
      targetName: move.target,
      bytesTotal: move.bytesTotal,
      tables: shared.tables,
      source: await open(() => connectNode(source, shared.access.passwords, 'reshard mover')),
      target: await open(() => connectNode(target, shared.access.passwords, 'reshard mover')),
      catalog: await open(() => connectCatalog(shared.access, 'reshard mover')),
      emit: shared.emit,
      copyGate: shared.throttle,
      facts: {},
    };
    await assertDistinctDatabases(context.catalog, { node: source, session: context.source }, { node: target, session: context.target });
    await runMove(context, shared.steps);
    const bytes = move.bytesTotal;
    const rows = context.facts['rowsCopied'] ?? 0;
    shared.emit({ type: 'move_done', migrationId: move.migrationId, slot: move.slot, source: move.source, target: move.target, bytes, rows, seconds: (Date.now() - started) / 1000 });
    return { bytes, rows };
  } catch (error) {
    const rolledBack = error instanceof MoveRolledBack;
    shared.emit({ type: 'move_failed', migrationId: move.migrationId, slot: move.slot, source: move.source, target: move.target, error: errorText(error), rolledBack });
    throw error;
  } finally {
    await Promise.all(opened.map((client) => client.end().catch(() => {})));
  }
}


/**
 * Runs (or resumes) a migration: its moves wave by wave, each wave's moves in
 * parallel up to the global limit, every step journaled. The first failure
 * stops new moves; moves in flight finish or roll back; the migration is
 * marked failed with that error.
 */
export async function runMigration(migrationId: number, runOptions: MigrationRunOptions): Promise<MigrationSummary> {
  const options = { ...runOptions, emit: loggingSink(runOptions.emit) };
  const started = Date.now();
  const lock = await connectCatalog(options.access, 'reshard coordinator');
  let progress: ByteProgressRecorder | undefined;
  let stopLatencyGuard: (() => Promise<void>) | undefined;
  try {
    if (!(await holdMigration(lock, migrationId))) {
      throw new ReshardError('conflict', `migration ${migrationId} is being run by another reshard process`, 'wait for it (`reshard status`)');
    }
    const migration = await getMigration(lock, migrationId);
    if (migration.state !== 'running') {
      throw new ReshardError('precondition', `migration ${migrationId} is ${migration.state}, not running`, 'start a new one with `reshard rebalance`');
    }
    const moves = await listMoves(lock, migrationId);
    noteMoveNodes(moves);
    const pending = moves.filter((move) => move.state !== 'done');
    // Checkpoints of parallel batches and the progress recorder share the coordinator's session.
    const controlSession = serialQueries(lock);
    progress = new ByteProgressRecorder(controlSession, migrationId, options.emit);
    progress.start();
    const checkpoint = new MigrationCheckpoint(catalogControlRecord(controlSession, migrationId), options.emit, options.controlLimits ?? CONTROL_LIMITS_DEFAULT);
    const shared = {
      access: options.access,
      nodes: new Map((await listNodes(lock, { includeRemoved: true })).map((node) => [node.name, node])),
      tables: (await listShardedTables(lock)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey })),
      modulus: (await getCluster(lock)).modulus,
      steps: OFFLINE_MOVE_STEPS,
      emit: progress.sink,
      checkpoint,
      headroomFraction: options.headroomFraction ?? HEADROOM_FRACTION_DEFAULT,
      // One gate for every copy of this migration: the rate cap is global.
      throttle: new CopyThrottle({
        ...(options.throttle?.copyBytesPerSecMax !== undefined ? { bytesPerSecMax: options.throttle.copyBytesPerSecMax } : {}),
        holdMsMax: options.throttle?.holdMsMax ?? COPY_HOLD_MS_MAX_DEFAULT,
      }),
    };
    await installHelpersOnSources(pending, shared.nodes, options.access);
    if (options.throttle?.maxLatencyImpact !== undefined) {
      const movingSlots = new Set(moves.map((move) => move.slot));
      // The nodes that serve the slots staying put: where no router reports on one, the guard probes it.
      const servingOwners = new Set((await readSlotMap(lock)).owners.filter((owner, slot): owner is string => owner !== undefined && !movingSlots.has(slot)));
      stopLatencyGuard = guardLatency({ migrationId, access: options.access, throttle: shared.throttle, movingSlots: [...movingSlots],
        probeNodes: [...servingOwners].map((name) => shared.nodes.get(name)).filter((node): node is NodeRecord => node !== undefined),
        operatorCapBytesPerSec: options.throttle.copyBytesPerSecMax, limits: { ...LATENCY_GUARD_DEFAULT, impactMax: options.throttle.maxLatencyImpact }, emit: shared.emit });
    }
    options.emit({ type: 'migration_started', migrationId, mode: migration.mode, moves: moves.length, bytesTotal: migration.bytesTotal, resumed: options.resumed ?? false });

    let failure: unknown;
    let bytesMoved = moves.filter((move) => move.state === 'done').reduce((sum, move) => sum + move.bytesCopied, 0);
    let rowsMoved = moves.filter((move) => move.state === 'done').reduce((sum, move) => sum + move.rowsCopied, 0);
    let slotsMoved = moves.length - pending.length;
    const pauses: number[] = [];
    if (migration.mode === 'offline') {
      const waves = [...new Set(pending.map((move) => move.wave))].sort((a, b) => a - b);
      for (const wave of waves) {
        if (failure) break;
        const results = await runBounded(
          pending.filter((move) => move.wave === wave),
          options.moveConcurrencyMax,
          // A move begun by an interrupted run is finished forward: its own steps know how far it got.
          (move) => checkpoint.pass({ cancellable: move.state === 'pending' }).then(() => executeMove(move, shared)).catch((error: unknown) => {
            failure ??= error;
            throw error;
          }),
          () => failure !== undefined,
        );
        for (const result of results) {
          if (result.status === 'fulfilled') {
            slotsMoved += 1;
            bytesMoved += result.value.bytes;
            rowsMoved += result.value.rows;
          } else {
            failure ??= result.reason;
          }
        }
      }
    } else {
      let outcome: Awaited<ReturnType<typeof runOnlineRounds>>;
      try {
        const { rounds, copiesMaxOf } = await onlineRounds(migrationId, pending, shared.nodes, shared.tables, shared.modulus, options.batchSlotsMax ?? BATCH_SLOTS_MAX_DEFAULT, options.access.passwords);
        outcome = await runOnlineRounds(rounds, { ...shared, copiesMaxOf }, options);
      } catch (error) {
        // Nothing was opened: the migration fails with the node's setting to change, and `resume` goes on after it.
        outcome = { failure: error, switched: [] };
      }
      failure = outcome.failure;
      for (const switched of outcome.switched) {
        slotsMoved += 1;
        bytesMoved += switched.bytes;
        rowsMoved += switched.rows;
        pauses.push(switched.pauseMs);
      }
    }

    await progress.stop();
    const seconds = (Date.now() - started) / 1000;
    if (failure) {
      const error = errorText(failure);
      const state = isCancellation(failure) ? await checkpoint.finishCancel() : 'failed';
      await finishMigration(lock, migrationId, state, error);
      options.emit({ type: 'migration_finished', migrationId, state, seconds, slotsMoved, bytesMoved, error });
      return { migrationId, state, slotsMoved, bytesMoved, rowsMoved, seconds, pausesMs: pauses, bytesStreamed: shared.throttle.streamedBytes, error };
    }
    await retireDrainedNodes(lock, options.access);
    await finishMigration(lock, migrationId, 'completed');
    options.emit({ type: 'migration_finished', migrationId, state: 'completed', seconds, slotsMoved, bytesMoved });
    return { migrationId, state: 'completed', slotsMoved, bytesMoved, rowsMoved, seconds, pausesMs: pauses, bytesStreamed: shared.throttle.streamedBytes };
  } finally {
    await stopLatencyGuard?.();
    await progress?.stop();
    await lock.end().catch(() => {});
  }
}

/**
 * The fence's trigger function, the node's slot state and the route check,
 * once per node at either end of a move before any move (the fence and the
 * switch write the source's slot state, the ATTACH the target's): concurrent
 * CREATE OR REPLACE FUNCTION calls fail with "tuple concurrently updated".
 */
async function installHelpersOnSources(moves: readonly MoveRecord[], nodes: Map<string, NodeRecord>, access: ClusterAccess): Promise<void> {
  // One session per node, the nodes at once.
  await Promise.all([...new Set(moves.flatMap((move) => [move.source, move.target]))].map(async (name) => {
    const node = nodes.get(name);
    assert(node, `source node ${name} is in the catalog`);
    const client = await connectNode(node, access.passwords);
    try {
      await installNodeHelpers(client);
    } finally {
      await client.end().catch(() => {});
    }
  }));
}

/**
 * A draining node that owns no slot any more is removed, and its reference
 * subscriptions dropped (they end here, not at `node remove`: while it drains
 * it still serves joins on its slots).
 */
async function retireDrainedNodes(catalog: pg.ClientBase, access: ClusterAccess): Promise<void> {
  const slotMap = await readSlotMap(catalog);
  const owners = new Set(slotMap.owners);
  const referenceTables = await listReferenceTables(catalog);
  for (const node of await listNodes(catalog)) {
    if (node.state !== 'draining' || owners.has(node.name)) continue;
    await setNodeState(catalog, node.name, 'removed');
    if (referenceTables.length > 0) await dropReferenceSubscriptionsOf(node, access);
  }
}

