import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { recordSlotSplit, slotChangedEpoch } from '../catalog/slotMap.js';
import { assert } from '../core/assert.js';
import { errorText, ReshardError } from '../core/errors.js';
import { catchUpStatements, captureChangedKeys, endChangedKeys, forgetChangedKeys } from '../node/exchangeChangedKeys.js';
import {
  compareExchange, exchangeSumsOf, exchangeSumsSql, forgetRetiredRowSums, trackExchangeRows, untrackExchangeRows, untrackNewLeafStatements, type ExchangeSums,
} from '../node/exchangeRowSums.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import { catchUpAcross, copyHalfToNode, remoteCatchUp, remoteChildExchange, scanAcross, type RemoteCatchUp, type RemoteChild } from '../node/remoteSplitChild.js';
import { ATTACH_LOCK_TIMEOUT_MS, attachSlot, detachSlotLeafForUndo, leafState } from '../node/slotPartitions.js';
import { leafName } from '../node/leafName.js';
import { forgetUnswitchedSlot, markSlotMoved } from '../node/slotState.js';
import {
  barOlderRoutes, copyIntoReplacementLeaves, dropReplacementLeaves, dropRetiredLeaves, exchangeLeaves, stageReplacementLeaves, undoLeafExchange, type LeafExchange,
} from '../node/splitLeaves.js';
import type { DescribedStep } from './moveStep.js';
import {
  CATCH_UP_ROUNDS_MAX, CATCH_UP_SMALL_CHANGES, exchangeStep, freezeExchange, leaves, retiredLeaves, type ExchangeStep, type SlotExchangeContext, type SlotExchangeView,
} from './slotExchangeSteps.js';

/**
 * `reshard split --slot N --to NODE` as one migration: slot r of m becomes r
 * and r + m of 2m, the low child on the slot's node (the source), the high
 * child on NODE (the target), every row copied once — the low half on the
 * source by INSERT … SELECT as an in-place split does, the high half over
 * the network straight into the target's leaf (`remoteSplitChild.ts`). Both
 * children catch up from the keys the source's trigger records, in rounds
 * that touch both nodes; one freeze (the source's leaf fenced, as any split)
 * takes the last round and proves each child against its half of the leaf by
 * row sums; then the low child is exchanged for the leaf on the source and
 * the high child attached on the target (at once, on two sessions), and one
 * catalog statement records both children with their owners. Same step
 * names as a split, same runner, journal and undo.
 *
 * `exchange` in the context is the source's part (the replaced leaf and the
 * low child); `child` is the high child on `target`.
 */
export interface SplitToContext extends SlotExchangeContext {
  targetName: string;
  /** A session on the target, owned by the caller. */
  target: pg.ClientBase;
  child: RemoteChild;
  /** The statements of a catch-up round, built once per process (they read both nodes' catalogs: not inside the freeze if the copy ran here). */
  rounds?: { statements: string[]; remote: RemoteCatchUp };
}

type SplitToStep = ExchangeStep<SplitToContext>;

/**
 * Both nodes' parts of a step at once, each on its own session: settled both
 * before a failure is thrown, so that an undo never queues behind the other
 * node's part still running on the same session.
 */
async function onBothNodes<Source, Target>(source: Promise<Source>, target: Promise<Target>): Promise<[Source, Target]> {
  const [sourcePart, targetPart] = await Promise.allSettled([source, target]);
  if (sourcePart.status === 'rejected') throw sourcePart.reason;
  if (targetPart.status === 'rejected') throw targetPart.reason;
  return [sourcePart.value, targetPart.value];
}

async function roundsOf(context: SplitToContext): Promise<{ statements: string[]; remote: RemoteCatchUp }> {
  context.rounds ??= {
    statements: await catchUpStatements(context.node, context.tables, context.exchange),
    remote: await remoteCatchUp(context.node, context.target, context.tables, context.exchange, context.child),
  };
  return context.rounds;
}

function onTarget(context: SplitToContext): LeafExchange {
  return remoteChildExchange(context.exchange, context.child);
}

/** The view's exchange as the source sees it (the replaced leaf and the low child), and the high child. */
function parts(view: SlotExchangeView): { low: { slot: number; modulus: number }; high: { slot: number; modulus: number }; to: string } {
  assert(view.to !== undefined && view.exchange.replacements.length === 2, 'a split --to view names its target and both children');
  return { low: view.exchange.replacements[0]!, high: view.exchange.replacements[1]!, to: view.to };
}

function highLeaves(view: SlotExchangeView): string {
  return leaves(view, [parts(view).high.slot]);
}

const prepare: SplitToStep = exchangeStep<SplitToContext>({
  name: 'prepare',
  describeExchange: (view) => `on ${parts(view).to}: create ${highLeaves(view)} standalone, shaped like the parents, with CHECK satisfies_hash_partition(parent, ${parts(view).high.modulus}, ${parts(view).high.slot}, key); on ${view.nodeName}: the same for the low child (${parts(view).low.modulus}, ${parts(view).low.slot}), staged beside the leaf; a row trigger on ${leaves(view, view.exchange.replaced)} records the primary key of every row written from now on (reshard_node.changed_keys)`,
  async do(context) {
    await onBothNodes(installNodeHelpers(context.node), installNodeHelpers(context.target));
    // A slot in no map yet has no leaf attached anywhere; one on the target is not this split's (its attach comes after prepare).
    for (const table of context.tables) {
      if ((await leafState(context.target, table, context.child.slot, context.exchange.clusterModulus)).attached) {
        throw new ReshardError('precondition', `${context.targetName} has ${table.schema}.${leafName(table.name, context.child.slot, context.exchange.clusterModulus)} attached, yet slot ${context.child.slot} is in no slot map`,
          `see \`reshard doctor\`; the split is rolled back (or run \`reshard rollback\`)`);
      }
    }
    await stageReplacementLeaves(context.target, context.tables, onTarget(context));
    await stageReplacementLeaves(context.node, context.tables, context.exchange);
    // Last: every change committed after it is recorded, and both copies begin after it.
    await captureChangedKeys(context.node, context.tables, context.exchange, ATTACH_LOCK_TIMEOUT_MS);
  },
  async undo(context) {
    await endChangedKeys(context.node, context.tables, context.exchange, ATTACH_LOCK_TIMEOUT_MS);
    await dropReplacementLeaves(context.node, context.tables, context.exchange);
    await dropReplacementLeaves(context.target, context.tables, onTarget(context));
  },
});

const copy: SplitToStep = exchangeStep<SplitToContext>({
  name: 'copy',
  describeExchange: (view) => `writes going on: on ${view.nodeName}, INSERT … SELECT the rows of ${leaves(view, view.exchange.replaced)} in (${parts(view).low.modulus}, ${parts(view).low.slot}) into the staged low child (one transaction); COPY the rows in (${parts(view).high.modulus}, ${parts(view).high.slot}) from ${view.nodeName} straight into ${highLeaves(view)} on ${parts(view).to} (binary COPY TO STDOUT | COPY FROM STDIN, one target transaction per table): each row copied once; catch up the recorded keys in rounds (the source's REPEATABLE READ transaction re-copies the keys' low rows and reads their high rows; ${parts(view).to} replaces its rows of those keys and commits; then the source forgets the keys); start the row sums of the leaf and both children (trigger + one scan); one more round`,
  async do(context) {
    const low = await copyIntoReplacementLeaves(context.node, context.tables, context.exchange);
    const high = await copyHalfToNode(context.node, context.target, context.tables, context.exchange, context.child);
    const { statements, remote } = await roundsOf(context);
    let caughtUp = 0;
    let rounds = 0;
    for (; rounds < CATCH_UP_ROUNDS_MAX; ) {
      rounds++;
      const round = await catchUpAcross(context.node, context.target, statements, remote);
      caughtUp += round.changes;
      if (round.changes <= CATCH_UP_SMALL_CHANGES) break;
    }
    const [summedSource, summedTarget] = await onBothNodes(
      trackExchangeRows(context.node, context.tables, context.exchange, ATTACH_LOCK_TIMEOUT_MS),
      trackExchangeRows(context.target, context.tables, onTarget(context), ATTACH_LOCK_TIMEOUT_MS),
    );
    caughtUp += (await catchUpAcross(context.node, context.target, statements, remote)).changes;
    // `rows`: every row of the slot copied once (the low half on the source, the high half over the network).
    return {
      rows: low.rows + high.rows, lowRows: low.rows, highRows: high.rows, highBytes: high.bytes, caughtUp, rounds: rounds + 1,
      tablesSummed: summedSource.filter((tracked, index) => tracked && summedTarget[index]).length,
    };
  },
  async undo(context) {
    await untrackExchangeRows(context.node, context.tables, context.exchange);
    await untrackExchangeRows(context.target, context.tables, onTarget(context));
  },
});

/** Per table, the source's [leaf, low child, low CHECK] and the target's [high child, high CHECK] as one [leaf, low, high, both CHECKs]. */
function combinedSums(source: ExchangeSums, target: ExchangeSums): ExchangeSums {
  return source.map((row, index) => {
    const there = target[index]!;
    return [...row.slice(0, -1), ...there.slice(0, -1), row[row.length - 1] === true && there[there.length - 1] === true];
  });
}

const sync: SplitToStep = exchangeStep<SplitToContext>({
  name: 'sync',
  describeExchange: (view) => `the last catch-up round across both nodes (the keys written before the fence), then the row sums of ${leaves(view, view.exchange.replaced)} on ${view.nodeName} against the low child's there and the high child's on ${parts(view).to} (count and checksum, per table; each child's bound proven by its validated CHECK), scanned child by child where rows hash by their text form`,
  async do(context) {
    const { statements, remote } = await roundsOf(context);
    const caughtUp = await catchUpAcross(context.node, context.target, statements, remote, {
      source: [exchangeSumsSql(context.tables, context.exchange)], target: [exchangeSumsSql(context.tables, onTarget(context))],
    });
    const both: LeafExchange = { ...context.exchange, replacements: [...context.exchange.replacements, context.child] };
    const comparisons = await compareExchange(context.node, context.tables, both, combinedSums(exchangeSumsOf(caughtUp.afterSource[0]!), exchangeSumsOf(caughtUp.afterTarget[0]!)),
      (table) => scanAcross(context.node, context.target, table, context.exchange, context.child));
    const differing = comparisons.filter((comparison) => !comparison.equal);
    if (differing.length > 0) {
      throw new Error(`the split copy differs from the slot: ${differing.map((comparison) => `${comparison.table} ${comparison.stagedRows.join(' + ')} rows in the children (${context.nodeName} + ${context.targetName}), ${comparison.replacedRows} in the slot (by ${comparison.by})`).join('; ')}`);
    }
    return {
      rows: comparisons.reduce((total, comparison) => total + comparison.replacedRows, 0),
      caughtUpInFreeze: caughtUp.changes,
      childRows: both.replacements.map((_, index) => comparisons.reduce((total, comparison) => total + comparison.stagedRows[index]!, 0)),
      tablesBySums: comparisons.filter((comparison) => comparison.by === 'sums').length,
      tablesByScan: comparisons.filter((comparison) => comparison.by === 'scan').length,
    };
  },
});

const attach: SplitToStep = exchangeStep<SplitToContext>({
  name: 'attach',
  describeExchange: (view) => `at once, each with its node's parents locked ACCESS EXCLUSIVE for milliseconds: on ${view.nodeName}, one transaction: DETACH ${leaves(view, view.exchange.replaced)}, rename it retired, ATTACH the low child (${parts(view).low.modulus}, ${parts(view).low.slot}), node slot state owned and routes older than now refused (the high half's keys have no leaf here any more); on ${parts(view).to}: ATTACH ${highLeaves(view)} (proven by its CHECK), node slot state owned`,
  async do(context) {
    const epoch = (await getCluster(context.catalog)).epoch;
    const [exchanged, attached] = await onBothNodes(
      exchangeLeaves(context.node, context.tables, context.exchange, epoch, ATTACH_LOCK_TIMEOUT_MS, { refuseOlderRoutes: true }),
      attachSlot(context.target, context.tables, context.child.slot, context.exchange.clusterModulus, ATTACH_LOCK_TIMEOUT_MS, epoch),
    );
    // Invariant 2 before the switch: the target serves every table of the high child, committed.
    assert(!attached.inTransaction, `the session on ${context.targetName} is not inside a transaction after the attach of slot ${context.child.slot}`);
    assert(attached.unattached.length === 0, `slot ${context.child.slot} is attached on ${context.targetName} (not: ${attached.unattached.map((table) => table.name).join(', ')})`);
    return { epoch, attempts: exchanged.attempts, exchangeMs: Math.round(exchanged.lockedMs * 10) / 10 };
  },
  async undo(context) {
    const epoch = (await getCluster(context.catalog)).epoch;
    // The target first never says 'owned' for a leaf it detaches; the slot is in no map yet, so no route reaches it.
    await forgetUnswitchedSlot(context.target, context.child.slot);
    for (const table of context.tables) await detachSlotLeafForUndo(context.target, table, context.child.slot, context.exchange.clusterModulus);
    await undoLeafExchange(context.node, context.tables, context.exchange, context.replacedModulus, epoch);
  },
});

const switchStep: SplitToStep = exchangeStep<SplitToContext>({
  name: 'switch',
  pointOfNoReturn: true,
  describeExchange: (view) => `catalog, one statement: slot ${view.exchange.replaced[0]} gets modulus ${parts(view).low.modulus} on ${view.nodeName}, slot ${parts(view).high.slot} is added on ${parts(view).to}, epoch + 1, notify (point of no return: afterwards a rollback moves slot ${parts(view).high.slot} back and merges); on ${view.nodeName}: slot ${parts(view).high.slot} recorded moved to ${parts(view).to}`,
  async do(context) {
    const epoch = await recordSlotSplit(context.catalog, context.exchange.replaced[0]!, context.child.modulus, context.targetName);
    const pauseMs = context.freezeStartedAt === undefined ? undefined : Math.round((performance.now() - context.freezeStartedAt) * 10) / 10;
    // The source's tombstone for the high child, after the catalog's switch, as a move's; it must not fail this
    // step (the catalog has switched): cleanup writes it if the source could not be reached here.
    const tombstone = await markSlotMoved(context.node, context.child.slot, context.targetName, epoch).catch((error: unknown) => ({ deferred: errorText(error) }));
    return { epoch, ...(pauseMs === undefined ? {} : { pauseMs }), ...('deferred' in tombstone ? { tombstoneDeferredToCleanup: tombstone.deferred } : {}) };
  },
});

const cleanup: SplitToStep = exchangeStep<SplitToContext>({
  name: 'cleanup',
  describeExchange: (view) => `on ${view.nodeName}: slot ${parts(view).high.slot} recorded moved to ${parts(view).to} (unless the switch did), calls routed at a map before the switch refused on slot ${view.exchange.replaced[0]} (RSM01), the recorded keys and row sums of the retired leaf forgotten and the leaf DROPped, the low child's CHECK dropped with its row sums' triggers; on ${parts(view).to}: the high child's CHECK dropped with its row sums' triggers`,
  async do(context) {
    const switchEpoch = await slotChangedEpoch(context.catalog, context.child.slot);
    await markSlotMoved(context.node, context.child.slot, context.targetName, switchEpoch);
    await barOlderRoutes(context.node, context.exchange, switchEpoch);
    await barOlderRoutes(context.target, onTarget(context), switchEpoch);
    await forgetChangedKeys(context.node, retiredLeaves(context));
    await forgetRetiredRowSums(context.node, context.tables, context.exchange);
    await dropRetiredLeaves(context.node, context.tables, context.exchange, (table, slot) => untrackNewLeafStatements(table, context.exchange, slot));
    await dropRetiredLeaves(context.target, context.tables, onTarget(context), (table, slot) => untrackNewLeafStatements(table, onTarget(context), slot));
  },
});

/** The steps of a split --to, in order (a split's names: the journal, status and the fault matrix read them alike). */
export const SPLIT_TO_STEPS: readonly SplitToStep[] = [prepare, copy, freezeExchange, sync, attach, switchStep, cleanup];

/** The steps as --dry-run prints them. */
export function describeSplitTo(view: SlotExchangeView): { step: DescribedStep['name']; action: string }[] {
  return SPLIT_TO_STEPS.map((listed) => ({ step: listed.name, action: listed.describeExchange(view) }));
}
