import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { createMigration, finishMigration, holdMigration, migrationIsHeld, reopenMigration, resumableMigration, updateMove } from '../catalog/migrationRuns.js';
import { getNode, listNodes } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { createSlotExchangeMigration, slotExchangeOf, type SlotExchangePlan } from '../catalog/slotExchanges.js';
import { listShardedTables } from '../catalog/tables.js';
import { errorText, ReshardError } from '../core/errors.js';
import { SLOT_MODULUS_MAX } from '../core/hash.js';
import { hasSlot, mergeParent, slotModulus, slotOwner, splitChildren, type SlotMap } from '../core/slotMap.js';
import { MoveRolledBack } from '../mover/moveRolledBack.js';
import { describeSlotExchange, SLOT_EXCHANGE_STEPS, type SlotExchangeContext } from '../mover/slotExchangeSteps.js';
import { catalogStepJournal } from '../mover/stepJournal.js';
import { StepRunner } from '../mover/stepRunner.js';
import { connectCatalog, withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import type { SlotTable } from '../node/slotPartitions.js';
import { runMigration, type MigrationSummary } from '../coordinator/runMigration.js';
import { connectNode } from '../plumbing/connectNode.js';

export interface SlotExchangeOptions {
  slot: number;
  /** Print the steps, change nothing. */
  dryRun?: boolean;
  emit?: MigrationEventSink;
  /** Recorded in the migration's plan as who started it (the autopilot's tag: a restarted autopilot finishes its own). */
  origin?: string;
}

export interface SplitOptions extends SlotExchangeOptions {
  /** After the split, move the high child (slot N + m) to this node (an online move of half the slot's rows). */
  to?: string;
  /** Runs the high child's move (a migration of its own): the autopilot pauses it at a window's end. */
  superviseMove?: (migrationId: number, run: () => Promise<MigrationSummary>) => Promise<MigrationSummary>;
}

export interface SlotExchangeResult {
  kind: 'split' | 'merge';
  slot: number;
  node: string;
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
  /** With `to`: the move of the high child that followed the split. */
  moved?: { slot: number; to: string; migrationId: number; state: string; error?: string };
}

/**
 * `reshard split --slot N`: slot N (modulus m) becomes N and N + m of 2m, on
 * its node, online (see `SLOT_EXCHANGE_STEPS`). Run again after a crash, it
 * resumes the interrupted split from its journal.
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
    return { kind: 'split', slot, node: slotOwner(map, slot), replaced: [slot], replacements: [{ slot: low, modulus: childModulus }, { slot: high, modulus: childModulus }], replacedModulus: modulus };
  });
  if (options.to === undefined || result.dryRun) return result;
  // The high child moves as one online move: the same journaled mover as a rebalance, half the slot's rows over the network.
  const high = result.replacements[1]!.slot;
  const migrationId = await withCatalog(access, async (catalog) => createMigration(catalog, {
    mode: 'online', baseEpoch: (await getCluster(catalog)).epoch, plan: { splitOf: result.migrationId, moves: [{ slot: high, from: result.node, to: options.to, wave: 0 }], ...(options.origin === undefined ? {} : { origin: options.origin }) },
    moves: [{ slot: high, source: result.node, target: options.to!, wave: 0, bytesTotal: 0 }],
  }));
  const runMove = (): Promise<MigrationSummary> => runMigration(migrationId, { access, emit: options.emit ?? (() => {}), moveConcurrencyMax: 1 });
  const summary = await (options.superviseMove ? options.superviseMove(migrationId, runMove) : runMove());
  return { ...result, moved: { slot: high, to: options.to, migrationId, state: summary.state, ...(summary.error ? { error: summary.error } : {}) } };
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

async function runSlotExchange(access: ClusterAccess, options: SlotExchangeOptions, planOf: (map: SlotMap, slot: number) => SlotExchangePlan): Promise<SlotExchangeResult> {
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
      plan = interrupted;
      migrationId = running.id;
      if (running.state === 'failed' && !options.dryRun) await reopenMigration(catalog, running.id);
    } else {
      plan = planOf(await readSlotMap(catalog), options.slot);
    }
    const tables = (await listShardedTables(catalog)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
    const exchange = { clusterModulus: cluster.modulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind };
    const view = { kind: plan.kind, nodeName: plan.node, tables, exchange, replacedModulus: plan.replacedModulus };
    const result: SlotExchangeResult = {
      kind: plan.kind, slot: plan.slot, node: plan.node,
      replaced: plan.replaced.map((slot) => ({ slot, modulus: plan.replacedModulus })), replacements: plan.replacements,
      dryRun: options.dryRun === true, steps: describeSlotExchange(view),
    };
    if (options.dryRun) return result;
    if (tables.length === 0) {
      throw new ReshardError('precondition', 'the cluster has no sharded table, so a slot has no partition to ' + plan.kind, 'create a table with `reshard table create` first, or nothing needs splitting');
    }
    const resumed = migrationId !== undefined;
    migrationId ??= await createSlotExchangeMigration(catalog, plan, cluster.epoch, 0, options.origin);
    if (!(await holdMigration(catalog, migrationId))) {
      throw new ReshardError('conflict', `the ${plan.kind} of slot ${plan.slot} is running in another process (migration ${migrationId})`, 'wait for it to finish (`reshard status`)');
    }
    const node = await connectNode(await getNode(catalog, plan.node), access.passwords, `reshard ${plan.kind}`);
    try {
      let ran: ExchangeOutcome;
      try {
        ran = await runExchangeSteps({ catalog, node, migrationId, plan, tables, clusterModulus: cluster.modulus, emit: options.emit ?? (() => {}) });
      } catch (error) {
        const rolledBack = error instanceof MoveRolledBack;
        await finishMigration(catalog, migrationId, rolledBack ? 'rolled_back' : 'failed', errorText(error));
        throw error;
      }
      await finishMigration(catalog, migrationId, 'completed');
      return { ...result, migrationId, resumed, ...ran };
    } finally {
      await node.end().catch(() => {});
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
}

/**
 * One split or merge of a migration, on the step runner keyed by its slot:
 * resumes from the journal, rolls back on failure before its switch (then
 * throws `MoveRolledBack`), and records its move running, then done. The
 * sessions are the caller's; the migration's end is the caller's too.
 */
export async function runExchangeSteps(run: {
  catalog: pg.ClientBase; node: pg.ClientBase; migrationId: number; plan: SlotExchangePlan; tables: readonly SlotTable[]; clusterModulus: number; emit: MigrationEventSink;
}): Promise<ExchangeOutcome> {
  const { catalog, node, migrationId, plan, tables } = run;
  const exchange = { clusterModulus: run.clusterModulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind };
  const context: SlotExchangeContext = {
    migrationId, kind: plan.kind, tables, nodeName: plan.node, node, catalog, exchange, replacedModulus: plan.replacedModulus, highOwner: plan.node,
  };
  const runner = await StepRunner.open(catalogStepJournal(catalog, migrationId), [plan.slot], run.emit);
  const facts: Record<string, Record<string, unknown>> = {};
  const steps = SLOT_EXCHANGE_STEPS.map((exchangeStep) => ({
    ...exchangeStep,
    async do(stepContext: SlotExchangeContext, slots: readonly number[]) {
      const returned = await exchangeStep.do(stepContext, slots);
      if (returned) facts[exchangeStep.name] = returned;
      return returned;
    },
  }));
  await updateMove(catalog, migrationId, plan.slot, { state: 'running' });
  await runner.run(steps, context, [plan.slot], { rollBackOnFailure: true });
  const pauseMs = facts.switch?.pauseMs as number | undefined;
  const rows = (facts.sync?.rows ?? facts.copy?.rows) as number | undefined;
  const caughtUpInFreeze = facts.sync?.caughtUpInFreeze as number | undefined;
  await updateMove(catalog, migrationId, plan.slot, { state: 'done', ...(pauseMs !== undefined ? { pauseMs } : {}), ...(rows !== undefined ? { rowsCopied: rows } : {}) });
  return { ...(rows !== undefined ? { rows } : {}), ...(pauseMs !== undefined ? { pauseMs } : {}), ...(caughtUpInFreeze !== undefined ? { caughtUpInFreeze } : {}) };
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
  catalog: pg.ClientBase; node: pg.ClientBase; migrationId: number; plan: SlotExchangePlan; tables: readonly SlotTable[]; clusterModulus: number; emit: MigrationEventSink;
}): Promise<void> {
  const { catalog, node, migrationId, plan, tables } = run;
  const exchange = { clusterModulus: run.clusterModulus, replaced: plan.replaced, replacements: plan.replacements, kind: plan.kind };
  const context: SlotExchangeContext = {
    migrationId, kind: plan.kind, tables, nodeName: plan.node, node, catalog, exchange, replacedModulus: plan.replacedModulus, highOwner: plan.node,
  };
  const runner = await StepRunner.open(catalogStepJournal(catalog, migrationId), [plan.slot], run.emit);
  const beforeSwitch = SLOT_EXCHANGE_STEPS.filter((exchangeStep) => !exchangeStep.pointOfNoReturn && exchangeStep.name !== 'cleanup');
  const outcome = await runner.rollBack(beforeSwitch, context, [plan.slot], new Error(`the ${plan.kind} of slot ${plan.slot} was rolled back on request`));
  if (!(outcome instanceof MoveRolledBack)) throw outcome;
}

export interface SlotExchangeRollback {
  /** Whether the exchange had switched (then its inverse ran), else it was undone in place. */
  switched: boolean;
  /** The inverse operation, when the exchange had switched. */
  inverse?: SlotExchangeResult;
}

/**
 * `reshard rollback` of a split or a merge. Before its switch it is undone in
 * place (the step runner's one undo path: exchange, fence, staged leaves);
 * after it, the inverse runs — a split is taken back by a merge of its
 * children, a merge by a split of its slot — with the same machine.
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
      const node = await connectNode(await getNode(catalog, plan.node), access.passwords, `reshard rollback (${plan.kind})`);
      try {
        await undoExchangeInPlace({ catalog, node, migrationId, plan, tables, clusterModulus: cluster.modulus, emit: emit ?? (() => {}) });
        await finishMigration(catalog, migrationId, 'rolled_back', 'rolled back on request before its switch');
      } finally {
        await node.end().catch(() => {});
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
  const inverse = plan.kind === 'split'
    ? await mergeSlot(access, { slot: plan.slot, ...(emit ? { emit } : {}) })
    : await splitSlot(access, { slot: plan.slot, ...(emit ? { emit } : {}) });
  return { switched, inverse };
}
