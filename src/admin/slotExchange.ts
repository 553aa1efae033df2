import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { createMigration, finishMigration, holdMigration, migrationIsHeld, reopenMigration, resumableMigration, updateMove } from '../catalog/migrationRuns.js';
import { getNode, listNodes } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { createSlotExchangeMigration, slotExchangeOf, type SlotExchangePlan } from '../catalog/slotExchanges.js';
import { listShardedTables } from '../catalog/tables.js';
import { assert } from '../core/assert.js';
import { errorText, ReshardError } from '../core/errors.js';
import { SLOT_MODULUS_MAX } from '../core/hash.js';
import { hasSlot, mergeParent, slotModulus, slotOwner, splitChildren, type SlotMap } from '../core/slotMap.js';
import { MoveRolledBack } from '../mover/moveRolledBack.js';
import { describeSlotExchange, SLOT_EXCHANGE_STEPS, type ExchangeStep, type SlotExchangeContext } from '../mover/slotExchangeSteps.js';
import { describeSplitTo, SPLIT_TO_STEPS, type SplitToContext } from '../mover/splitToSteps.js';
import { catalogStepJournal } from '../mover/stepJournal.js';
import { StepRunner } from '../mover/stepRunner.js';
import { connectCatalog, withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { SlotTable } from '../node/slotPartitions.js';
import { runMigration, type MigrationSummary } from '../coordinator/runMigration.js';
import { connectNode } from '../plumbing/connectNode.js';
import { assertRoomForMoves, HEADROOM_FRACTION_DEFAULT } from '../coordinator/nodeSpaces.js';
import { leafName } from '../node/leafName.js';
import { leafSizeBytes } from '../node/leafSizeBytes.js';

export interface SlotExchangeOptions {
  slot: number;
  /** Print the steps, change nothing. */
  dryRun?: boolean;
  emit?: MigrationEventSink;
  /** Recorded in the migration's plan as who started it (the autopilot's tag: a restarted autopilot finishes its own). */
  origin?: string;
}

export interface SplitOptions extends SlotExchangeOptions {
  /** Place the high child (slot N + m) on this node, in the same operation: its half of the rows is copied there once. */
  to?: string;
}

export interface SlotExchangeResult {
  kind: 'split' | 'merge';
  slot: number;
  node: string;
  /** A split --to: the high child's node. */
  to?: string;
  /** Slots before and after, as (modulus, remainder). */
  replaced: { slot: number; modulus: number }[];
  replacements: { slot: number; modulus: number }[];
  dryRun: boolean;
  /** The steps as run (or, with dryRun, as they would run). */
  steps: { step: string; action: string }[];
  migrationId?: number;
  resumed?: boolean;
  /** Rows copied into the new leaves. */
  rows?: number;
  /** Writes to the slot paused from the freeze to the catalog switch (this process's part when resumed). */
  pauseMs?: number;
  /** Recorded changes the last catch-up took inside the freeze. */
  caughtUpInFreeze?: number;
  /** With `to`: where the high child went (the same migration as the split). */
  moved?: { slot: number; to: string; migrationId: number; state: string };
  /** With `to`: the rows copied into each child (low on `node`, high on `to`), from the copy step's journal. */
  rowsCopied?: { low: number; high: number };
}

/**
 * `reshard split --slot N [--to NODE]`: slot N (modulus m) becomes N and
 * N + m of 2m, online: both on its node (`SLOT_EXCHANGE_STEPS`), or with
 * `--to` the high child on NODE, each row copied once (`SPLIT_TO_STEPS`).
 * Run again after a crash, it resumes the interrupted split from its journal.
 */
export async function splitSlot(access: ClusterAccess, options: SplitOptions): Promise<SlotExchangeResult> {
  if (options.to !== undefined) await assertMoveTarget(access, options.to);
  const result = await runSlotExchange(access, options, (map, slot) => {
    requireSlot(map, slot);
    const modulus = slotModulus(map, slot);
    const { low, high, modulus: childModulus } = splitChildren(map, slot);
    if (childModulus > SLOT_MODULUS_MAX) {
      throw new ReshardError('bad_input', `slot ${slot} has modulus ${modulus}; split, its children would pass PostgreSQL's largest modulus ${SLOT_MODULUS_MAX}`, 'split another slot');
    }
    if (options.to !== undefined && options.to === slotOwner(map, slot)) {
      throw new ReshardError('bad_input', `--to ${options.to} is the node slot ${slot} is on already`, 'name another node, or leave --to out to split in place');
    }
    return {
      kind: 'split', slot, node: slotOwner(map, slot), replaced: [slot], replacements: [{ slot: low, modulus: childModulus }, { slot: high, modulus: childModulus }], replacedModulus: modulus,
      ...(options.to === undefined ? {} : { to: options.to }),
    };
  }, (interrupted) => {
    if (options.to !== undefined && interrupted.to !== undefined && interrupted.to !== options.to) {
      throw new ReshardError('conflict', `the interrupted split of slot ${interrupted.slot} places its high child on ${interrupted.to}, not ${options.to}`,
        `run \`reshard split --slot ${interrupted.slot}\` to finish it as it was started, or \`reshard rollback\` to undo it`);
    }
  });
  if (options.to === undefined || result.dryRun || result.to !== undefined) return result;
  // An in-place split resumed with --to: how a split --to ran before it was one migration (started by an older
  // reshard, or interrupted and run again with --to) — the high child then moves as one online move.
  const high = result.replacements[1]!.slot;
  const moved = await moveSlot(access, high, options.to, { splitOf: result.migrationId }, options.emit);
  return { ...result, ...(moved ? { moved: { slot: high, to: options.to, migrationId: moved.migrationId, state: moved.state } } : {}) };
}

/**
 * A new split --to: the target has room for the high child (half the slot's
 * bytes, as measured on the source now), as a move checks before it starts.
 */
async function assertRoomForHighChild(access: ClusterAccess, catalog: pg.ClientBase, plan: SlotExchangePlan, tables: readonly SlotTable[], clusterModulus: number): Promise<void> {
  const source = await connectNode(await getNode(catalog, plan.node), access.passwords, 'reshard split (space)');
  let slotBytes = 0;
  try {
    for (const table of tables) slotBytes += await leafSizeBytes(source, table.schema, leafName(table.name, plan.slot, clusterModulus));
  } finally {
    await source.end().catch(() => {});
  }
  const high = plan.replacements[1]!.slot;
  try {
    await assertRoomForMoves(await getNode(catalog, plan.to!), [{ slot: high, bytesTotal: Math.ceil(slotBytes / 2) }], access.passwords, HEADROOM_FRACTION_DEFAULT);
  } catch (error) {
    if (!(error instanceof ReshardError)) throw error;
    throw new ReshardError(error.code, `split of slot ${plan.slot} ${error.message}`, `free space on ${plan.to} or raise its capacity (\`reshard node add … --capacity\`), or name another node with --to`);
  }
}

/** `--to` must name an active node with weight (checked before anything changes). */
async function assertMoveTarget(access: ClusterAccess, name: string): Promise<void> {
  await withCatalog(access, async (catalog) => {
    const node = (await listNodes(catalog)).find((candidate) => candidate.name === name);
    if (!node || node.state !== 'active') {
      throw new ReshardError('not_found', `--to names no active node "${name}"`, 'list the nodes with `reshard node list`');
    }
  });
}

/**
 * `reshard merge --slot N`: slot N and its sibling (same modulus 2m, on the
 * same node) become their parent of modulus m, online, with the split's machine.
 */
export function mergeSlot(access: ClusterAccess, options: SlotExchangeOptions): Promise<SlotExchangeResult> {
  return runSlotExchange(access, options, (map, slot) => {
    requireSlot(map, slot);
    const merge = mergeParent(map, slot);
    if (!merge) {
      throw new ReshardError('precondition', `slot ${slot} (modulus ${slotModulus(map, slot)}) has no sibling to merge with: it was never split, or its sibling is split further`,
        'merge the sibling\'s children first, or pick a slot made by `reshard split`');
    }
    const owner = slotOwner(map, slot);
    const siblingOwner = slotOwner(map, merge.sibling);
    if (owner !== siblingOwner) {
      throw new ReshardError('precondition', `slot ${slot} is on ${owner} and its sibling ${merge.sibling} on ${siblingOwner}; a merge needs both on one node`,
        `move slot ${merge.sibling} to ${owner} first (a rebalance), then merge`);
    }
    const low = Math.min(slot, merge.sibling);
    const high = Math.max(slot, merge.sibling);
    return { kind: 'merge', slot: merge.parent, node: owner, replaced: [low, high], replacements: [{ slot: merge.parent, modulus: merge.modulus }], replacedModulus: merge.modulus * 2 };
  });
}

function requireSlot(map: SlotMap, slot: number): void {
  if (!hasSlot(map, slot)) throw new ReshardError('not_found', `the slot map has no slot ${slot}`, 'see the slots with `reshard slot` or `reshard status`');
}

async function runSlotExchange(access: ClusterAccess, options: SlotExchangeOptions, planOf: (map: SlotMap, slot: number) => SlotExchangePlan,
  assertResumable: (interrupted: SlotExchangePlan) => void = () => {}): Promise<SlotExchangeResult> {
  const catalog = await connectCatalog(access, 'reshard split');
  try {
    await assertCatalogCurrent(catalog);
    const cluster = await getCluster(catalog);
    // An interrupted (or failed past its switch) exchange of this slot is resumed from its journal, not planned again.
    const running = await resumableMigration(catalog);
    const interrupted = running ? await slotExchangeOf(catalog, running.id) : undefined;
    let plan: SlotExchangePlan;
    let migrationId: number | undefined;
    if (running && interrupted && (interrupted.slot === options.slot || interrupted.replaced.includes(options.slot))) {
      if (await migrationIsHeld(catalog, running.id)) {
        throw new ReshardError('conflict', `the ${interrupted.kind} of slot ${interrupted.slot} is running (migration ${running.id})`, 'wait for it to finish (`reshard status`)');
      }
      assertResumable(interrupted);
      plan = interrupted;
      migrationId = running.id;
      if (running.state === 'failed' && !options.dryRun) await reopenMigration(catalog, running.id);
    } else {
      plan = planOf(await readSlotMap(catalog), options.slot);
    }
    const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
    const exchange = { clusterModulus: cluster.modulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind };
    const view = { kind: plan.kind, nodeName: plan.node, tables, exchange, replacedModulus: plan.replacedModulus, ...(plan.to === undefined ? {} : { to: plan.to }) };
    const result: SlotExchangeResult = {
      kind: plan.kind, slot: plan.slot, node: plan.node, ...(plan.to === undefined ? {} : { to: plan.to }),
      replaced: plan.replaced.map((slot) => ({ slot, modulus: plan.replacedModulus })), replacements: plan.replacements,
      dryRun: options.dryRun === true, steps: plan.to === undefined ? describeSlotExchange(view) : describeSplitTo(view),
    };
    if (options.dryRun) return result;
    if (tables.length === 0) {
      throw new ReshardError('precondition', 'the cluster has no sharded table, so a slot has no partition to ' + plan.kind, 'create a table with `reshard table create` first, or nothing needs splitting');
    }
    const resumed = migrationId !== undefined;
    if (!resumed && plan.to !== undefined) await assertRoomForHighChild(access, catalog, plan, tables, cluster.modulus);
    migrationId ??= await createSlotExchangeMigration(catalog, plan, cluster.epoch, 0, options.origin);
    if (!(await holdMigration(catalog, migrationId))) {
      throw new ReshardError('conflict', `the ${plan.kind} of slot ${plan.slot} is running in another process (migration ${migrationId})`, 'wait for it to finish (`reshard status`)');
    }
    let sessions: ExchangeSessions | undefined;
    try {
      let ran: ExchangeOutcome;
      try {
        sessions = await connectExchange(access, catalog, plan, `reshard ${plan.kind}`);
        ran = await runExchangeSteps({ catalog, ...sessions, migrationId, plan, tables, clusterModulus: cluster.modulus, emit: options.emit ?? (() => {}) });
      } catch (error) {
        const rolledBack = error instanceof MoveRolledBack;
        await finishMigration(catalog, migrationId, rolledBack ? 'rolled_back' : 'failed', errorText(error));
        throw error;
      }
      await finishMigration(catalog, migrationId, 'completed');
      const moved = plan.to === undefined ? {} : { moved: { slot: plan.replacements[1]!.slot, to: plan.to, migrationId, state: 'completed' } };
      return { ...result, migrationId, resumed, ...ran, ...moved };
    } finally {
      await sessions?.release();
    }
  } finally {
    await catalog.end().catch(() => {});
  }
}

/** What one exchange's steps report: rows copied, and the write pause from its freeze to its switch (this process's part when resumed). */
export interface ExchangeOutcome {
  rows?: number;
  pauseMs?: number;
  /** Recorded changes the last catch-up took inside the freeze (the rest was caught up while writes went on). */
  caughtUpInFreeze?: number;
  /** A split --to: the rows copied into each child (low on the source, high on the target). */
  rowsCopied?: { low: number; high: number };
}

/** The sessions an exchange runs on: its node, and for a split --to the high child's node. */
export interface ExchangeSessions {
  node: pg.ClientBase;
  target?: pg.ClientBase;
  release(): Promise<void>;
}

/** Connects the exchange's node (and a split --to's target); a failure leaves nothing open. */
export async function connectExchange(access: ClusterAccess, catalog: pg.ClientBase, plan: SlotExchangePlan, application: string): Promise<ExchangeSessions> {
  const node = await connectNode(await getNode(catalog, plan.node), access.passwords, application);
  if (plan.to === undefined) return { node, release: () => node.end().catch(() => {}) };
  let target: pg.Client;
  try {
    target = await connectNode(await getNode(catalog, plan.to), access.passwords, application);
  } catch (error) {
    await node.end().catch(() => {});
    throw error;
  }
  return { node, target, release: async () => { await Promise.all([node.end(), target.end()].map((ending) => ending.catch(() => {}))); } };
}

/**
 * The steps and the context of an exchange: a split or a merge on one node,
 * or a split whose high child goes to `plan.to` (then `target` is a session there).
 */
function exchangeMachine(run: {
  catalog: pg.ClientBase; node: pg.ClientBase; target?: pg.ClientBase | undefined; migrationId: number; plan: SlotExchangePlan; tables: readonly SlotTable[]; clusterModulus: number;
}): { steps: readonly ExchangeStep<SplitToContext>[]; context: SplitToContext } | { steps: readonly ExchangeStep[]; context: SlotExchangeContext } {
  const { catalog, node, migrationId, plan, tables } = run;
  const exchange = { clusterModulus: run.clusterModulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind };
  const base = { migrationId, kind: plan.kind, tables, nodeName: plan.node, node, catalog, replacedModulus: plan.replacedModulus };
  if (plan.to === undefined) return { steps: SLOT_EXCHANGE_STEPS, context: { ...base, exchange, highOwner: plan.node } };
  assert(plan.kind === 'split' && plan.replacements.length === 2, `only a split places a child on another node (migration ${migrationId})`);
  assert(run.target !== undefined, `a session on ${plan.to}, the high child's node, for the split of slot ${plan.slot}`);
  const local = { ...exchange, replacements: [plan.replacements[0]!] };
  return { steps: SPLIT_TO_STEPS, context: { ...base, exchange: local, highOwner: plan.to, targetName: plan.to, target: run.target, child: plan.replacements[1]! } };
}

/**
 * One split or merge of a migration, on the step runner keyed by its slot:
 * resumes from the journal, rolls back on failure before its switch (then
 * throws `MoveRolledBack`), and records its move running, then done. The
 * sessions are the caller's; the migration's end is the caller's too.
 */
export async function runExchangeSteps(run: {
  catalog: pg.ClientBase; node: pg.ClientBase; target?: pg.ClientBase | undefined; migrationId: number; plan: SlotExchangePlan; tables: readonly SlotTable[]; clusterModulus: number; emit: MigrationEventSink;
}): Promise<ExchangeOutcome> {
  const { catalog, migrationId, plan } = run;
  const runner = await StepRunner.open(catalogStepJournal(catalog, migrationId), [plan.slot], run.emit);
  const facts: Record<string, Record<string, unknown>> = {};
  const machine = exchangeMachine(run);
  await updateMove(catalog, migrationId, plan.slot, { state: 'running' });
  if (machine.context.kind === 'split' && 'child' in machine.context) {
    await runner.run(withFacts(machine.steps as readonly ExchangeStep<SplitToContext>[], facts), machine.context, [plan.slot], { rollBackOnFailure: true });
  } else {
    await runner.run(withFacts(machine.steps as readonly ExchangeStep[], facts), machine.context, [plan.slot], { rollBackOnFailure: true });
  }
  const pauseMs = facts.switch?.pauseMs as number | undefined;
  const rows = (facts.sync?.rows ?? facts.copy?.rows) as number | undefined;
  const caughtUpInFreeze = facts.sync?.caughtUpInFreeze as number | undefined;
  const rowsCopied = facts.copy?.highRows === undefined ? undefined : { low: facts.copy.lowRows as number, high: facts.copy.highRows as number };
  await updateMove(catalog, migrationId, plan.slot, { state: 'done', ...(pauseMs !== undefined ? { pauseMs } : {}), ...(rows !== undefined ? { rowsCopied: rows } : {}) });
  return {
    ...(rows !== undefined ? { rows } : {}), ...(pauseMs !== undefined ? { pauseMs } : {}), ...(caughtUpInFreeze !== undefined ? { caughtUpInFreeze } : {}),
    ...(rowsCopied ? { rowsCopied } : {}),
  };
}

/** The steps, each keeping what its `do` returned (in this process) under its name. */
function withFacts<Context>(steps: readonly ExchangeStep<Context & SlotExchangeContext>[], facts: Record<string, Record<string, unknown>>): ExchangeStep<Context & SlotExchangeContext>[] {
  return steps.map((listed) => ({
    ...listed,
    async do(stepContext: Context & SlotExchangeContext, slots: readonly number[]) {
      const returned = await listed.do(stepContext, slots);
      if (returned) facts[listed.name] = returned;
      return returned;
    },
  }));
}

/** Whether the catalog shows the exchange switched (its point of no return passed). */
export function exchangeSwitched(map: SlotMap, plan: SlotExchangePlan): boolean {
  return plan.kind === 'split'
    ? hasSlot(map, plan.replacements[1]!.slot) && slotModulus(map, plan.slot) === plan.replacements[0]!.modulus
    : !hasSlot(map, plan.replaced[1]!);
}

/**
 * An exchange that has not switched, undone in place by the step runner's one
 * undo path (exchange, fence, staged leaves), its move recorded rolled back.
 * The sessions and the migration's end are the caller's.
 */
export async function undoExchangeInPlace(run: {
  catalog: pg.ClientBase; node: pg.ClientBase; target?: pg.ClientBase | undefined; migrationId: number; plan: SlotExchangePlan; tables: readonly SlotTable[]; clusterModulus: number; emit: MigrationEventSink;
}): Promise<void> {
  const { catalog, migrationId, plan } = run;
  const runner = await StepRunner.open(catalogStepJournal(catalog, migrationId), [plan.slot], run.emit);
  const machine = exchangeMachine(run);
  const error = new Error(`the ${plan.kind} of slot ${plan.slot} was rolled back on request`);
  const beforeSwitch = <Step extends ExchangeStep<never>>(steps: readonly Step[]): Step[] => steps.filter((listed) => !listed.pointOfNoReturn && listed.name !== 'cleanup');
  const outcome = 'child' in machine.context
    ? await runner.rollBack(beforeSwitch(machine.steps as readonly ExchangeStep<SplitToContext>[]), machine.context, [plan.slot], error)
    : await runner.rollBack(beforeSwitch(machine.steps as readonly ExchangeStep[]), machine.context, [plan.slot], error);
  if (!(outcome instanceof MoveRolledBack)) throw outcome;
}

export interface SlotExchangeRollback {
  /** Whether the exchange had switched (then its inverse ran), else it was undone in place. */
  switched: boolean;
  /** The inverse operation, when the exchange had switched. */
  inverse?: SlotExchangeResult;
  /** A switched split --to: the move of the high child back to the low child's node, before the merge. */
  movedBack?: { slot: number; from: string; to: string; migrationId: number; state: string };
}

/**
 * `reshard rollback` of a split or a merge. Before its switch it is undone in
 * place (the step runner's one undo path: exchange, fence, staged leaves —
 * for a split --to on both nodes); after it, the inverse runs — a split is
 * taken back by a merge of its children (a split --to's high child first
 * moved back to its sibling's node by an online move), a merge by a split of
 * its slot — with the same machines.
 */
export async function rollbackSlotExchange(access: ClusterAccess, migrationId: number, plan: SlotExchangePlan, emit?: MigrationEventSink): Promise<SlotExchangeRollback> {
  const catalog = await connectCatalog(access, `reshard rollback (${plan.kind})`);
  let switched: boolean;
  try {
    switched = exchangeSwitched(await readSlotMap(catalog), plan);
    const migration = await resumableMigration(catalog);
    const unfinished = migration?.id === migrationId;
    if (!switched) {
      if (!(await holdMigration(catalog, migrationId))) {
        throw new ReshardError('conflict', `the ${plan.kind} of slot ${plan.slot} is running in another process (migration ${migrationId})`, 'wait for it to finish, then roll back');
      }
      const cluster = await getCluster(catalog);
      const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
      const sessions = await connectExchange(access, catalog, plan, `reshard rollback (${plan.kind})`);
      try {
        await undoExchangeInPlace({ catalog, ...sessions, migrationId, plan, tables, clusterModulus: cluster.modulus, emit: emit ?? (() => {}) });
        await finishMigration(catalog, migrationId, 'rolled_back', 'rolled back on request before its switch');
      } finally {
        await sessions.release();
      }
      return { switched };
    }
    if (unfinished) {
      // Past its switch but not cleaned up: finished first (from its journal), then taken back.
      await catalog.end().catch(() => {});
      const runExchange = plan.kind === 'split' ? splitSlot : mergeSlot;
      await runExchange(access, { slot: plan.slot, ...(emit ? { emit } : {}) });
    }
  } finally {
    await catalog.end().catch(() => {});
  }
  const movedBack = plan.kind === 'split' ? await moveSiblingsTogether(access, plan.slot, plan.replacements[1]!.slot, emit) : undefined;
  const inverse = plan.kind === 'split'
    ? await mergeSlot(access, { slot: plan.slot, ...(emit ? { emit } : {}) })
    : await splitSlot(access, { slot: plan.slot, ...(emit ? { emit } : {}) });
  return { switched, inverse, ...(movedBack ? { movedBack } : {}) };
}

/**
 * Before the merge that takes a split back: the high child moved to the low
 * child's node when it is elsewhere (a split --to put it there). Nothing when
 * they share a node.
 */
async function moveSiblingsTogether(access: ClusterAccess, low: number, high: number, emit?: MigrationEventSink): Promise<SlotExchangeRollback['movedBack']> {
  const map = await withCatalog(access, (catalog) => readSlotMap(catalog));
  if (!hasSlot(map, high) || slotOwner(map, high) === slotOwner(map, low)) return undefined;
  const moved = await moveSlot(access, high, slotOwner(map, low), { mergeOf: low }, emit);
  return moved ? { slot: high, ...moved } : undefined;
}

/**
 * One slot moved to `to` as one online move (a migration of its own, as a
 * rebalance runs it); `tag` goes into its plan (why it moved). Undefined when
 * the slot is there already; throws when the move does not complete.
 */
async function moveSlot(access: ClusterAccess, slot: number, to: string, tag: Record<string, unknown>, emit?: MigrationEventSink): Promise<{ from: string; to: string; migrationId: number; state: string } | undefined> {
  const move = await withCatalog(access, async (catalog) => {
    const map = await readSlotMap(catalog);
    const from = slotOwner(map, slot);
    if (from === to) return undefined;
    const migrationId = await createMigration(catalog, {
      mode: 'online', baseEpoch: map.epoch, plan: { ...tag, moves: [{ slot, from, to, wave: 0 }] },
      moves: [{ slot, source: from, target: to, wave: 0, bytesTotal: 0 }],
    });
    return { from, migrationId };
  });
  if (!move) return undefined;
  const summary: MigrationSummary = await runMigration(move.migrationId, { access, emit: emit ?? (() => {}), moveConcurrencyMax: 1 });
  if (summary.state !== 'completed') {
    throw new ReshardError('aborted', `moving slot ${slot} from ${move.from} to ${to} (migration ${move.migrationId}) ended ${summary.state}${summary.error ? `: ${summary.error}` : ''}`,
      'run `reshard resume` to finish the move (or `reshard rollback` to take it back)');
  }
  return { from: move.from, to, migrationId: move.migrationId, state: summary.state };
}
