import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { recordSlotMerge, recordSlotSplit, setSlotState, slotChangedEpoch } from '../catalog/slotMap.js';
import { fenceSlot, unfenceSlot } from '../node/fence.js';
import { leafName } from '../node/leafName.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import type { SlotTable } from '../node/slotPartitions.js';
import { quoteQualified } from '../core/identifier.js';
import { captureChangedKeys, catchUpChangedKeys, catchUpStatements, endChangedKeys, forgetChangedKeys } from '../node/exchangeChangedKeys.js';
import { compareExchange, exchangeSumsOf, exchangeSumsSql, forgetRetiredRowSums, trackExchangeRows, untrackExchangeRows, untrackNewLeafStatements } from '../node/exchangeRowSums.js';
import { ATTACH_LOCK_TIMEOUT_MS } from '../node/slotPartitions.js';
import {
  barOlderRoutes, copyIntoReplacementLeaves, dropReplacementLeaves, dropRetiredLeaves, exchangeLeaves,
  retiredLeafName, stageReplacementLeaves, undoLeafExchange, type LeafExchange,
} from '../node/splitLeaves.js';
import { beginSlotFreeze } from './freezeSlot.js';
import type { DescribedStep, MoveStep } from './moveStep.js';

/**
 * A split (slot r of m → r and r + m of 2m) or a merge (the reverse) on the
 * slot's own node, as named steps on the one step runner. Everything runs on
 * that node (no network, no subscription — a node cannot subscribe to its
 * own tables): a row trigger records the keys written to the replaced leaves,
 * their rows are copied by INSERT … SELECT into staged leaves while writes go
 * on, the recorded keys are caught up in rounds, and only then is the slot
 * frozen; inside the freeze, one round trip takes the last keys and compares
 * row sums (count and checksum), then one node transaction exchanges the
 * leaves (DETACH, renames, ATTACH proven by CHECK) under the parents' ACCESS
 * EXCLUSIVE lock for milliseconds, then the catalog switches. Writes to the
 * slot pause from the freeze to the switch: for the keys written since the
 * last round, not for the slot's rows.
 */
export interface SlotExchangeContext {
  migrationId: number;
  kind: 'split' | 'merge';
  tables: readonly SlotTable[];
  nodeName: string;
  /** Sessions owned by the caller; steps never close them. */
  node: pg.ClientBase;
  catalog: pg.ClientBase;
  exchange: LeafExchange;
  /** The modulus of the replaced slots. */
  replacedModulus: number;
  /** For a split, the owner recorded for the new high slot (this node). */
  highOwner: string;
  /** The epoch of the freeze, once taken (from the journal on resume). */
  freezeEpoch?: number;
  /** When the freeze began in this process: the write pause runs from here to the switch. */
  freezeStartedAt?: number;
  /** The catch-up round's statements, built once per process (they read the node's catalog: not inside the freeze when the copy ran here). */
  catchUpStatements?: string[];
}

/** What `describe` of an exchange step may show. */
export interface SlotExchangeView {
  kind: 'split' | 'merge';
  nodeName: string;
  tables: readonly SlotTable[];
  exchange: LeafExchange;
  replacedModulus: number;
  /** A split's high child goes to this node (`split --to`): the steps of `splitToSteps.ts`. */
  to?: string;
}

export function leaves(view: SlotExchangeView, slots: readonly number[]): string {
  return view.tables.flatMap((table) => slots.map((slot) => leafName(table.name, slot, view.exchange.clusterModulus))).join(', ');
}

export function bounds(view: SlotExchangeView): string {
  return view.exchange.replacements.map(({ slot, modulus }) => `(${modulus}, ${slot})`).join(' and ');
}

export type ExchangeStep<Context extends SlotExchangeContext = SlotExchangeContext> = MoveStep<Context> & { describeExchange(view: SlotExchangeView): string };

export function exchangeStep<Context extends SlotExchangeContext = SlotExchangeContext>(definition: Omit<ExchangeStep<Context>, 'describe'>): ExchangeStep<Context> {
  // The runner's MovePlanView does not fit an exchange; dry-run uses describeExchange.
  return { ...definition, describe: () => definition.name };
}

/** A catch-up round while writes go on that takes no more recorded changes than this ends the copy step (the freeze takes the rest). */
export const CATCH_UP_SMALL_CHANGES = 500;
/** Catch-up rounds of the copy step at most (writes faster than a round leave more to the freeze, never an endless copy). */
export const CATCH_UP_ROUNDS_MAX = 20;

const prepare = exchangeStep({
  name: 'prepare',
  describeExchange: (view) => `on ${view.nodeName}: create the leaves of ${bounds(view)} standalone, shaped like the parents, each with CHECK satisfies_hash_partition(parent, modulus, remainder, key); a row trigger on ${leaves(view, view.exchange.replaced)} records the primary key of every row written from now on (reshard_node.changed_keys)`,
  async do(context) {
    await installNodeHelpers(context.node);
    await stageReplacementLeaves(context.node, context.tables, context.exchange);
    await captureChangedKeys(context.node, context.tables, context.exchange, ATTACH_LOCK_TIMEOUT_MS);
  },
  async undo(context) {
    await endChangedKeys(context.node, context.tables, context.exchange, ATTACH_LOCK_TIMEOUT_MS);
    await dropReplacementLeaves(context.node, context.tables, context.exchange);
  },
});

const copy = exchangeStep({
  name: 'copy',
  describeExchange: (view) => `on ${view.nodeName}, writes going on: INSERT … SELECT the rows of ${leaves(view, view.exchange.replaced)} into the staged leaves of ${bounds(view)} by satisfies_hash_partition (local, one transaction); catch up the recorded keys in rounds (each one REPEATABLE READ transaction: the keys' rows deleted from the staged leaves and copied again); start the row sums of both sides (trigger + one scan); one more round`,
  async do(context) {
    const copied = await copyIntoReplacementLeaves(context.node, context.tables, context.exchange);
    const statements = context.catchUpStatements ??= await catchUpStatements(context.node, context.tables, context.exchange);
    let caughtUp = 0;
    let rounds = 0;
    for (; rounds < CATCH_UP_ROUNDS_MAX; ) {
      rounds++;
      const round = await catchUpChangedKeys(context.node, statements);
      caughtUp += round.changes;
      if (round.changes <= CATCH_UP_SMALL_CHANGES) break;
    }
    // The sums make the verification inside the freeze read sums instead of scanning the slot.
    const summed = await trackExchangeRows(context.node, context.tables, context.exchange, ATTACH_LOCK_TIMEOUT_MS);
    caughtUp += (await catchUpChangedKeys(context.node, statements)).changes;
    return { rows: copied.rows, caughtUp, rounds: rounds + 1, tablesSummed: summed.filter(Boolean).length };
  },
  async undo(context) {
    await untrackExchangeRows(context.node, context.tables, context.exchange);
  },
});

export const freezeExchange = exchangeStep({
  name: 'freeze',
  describeExchange: (view) => `slot${view.exchange.replaced.length > 1 ? 's' : ''} ${view.exchange.replaced.join(' and ')} frozen in the catalog (routers hold their calls); on ${view.nodeName}: fence ${leaves(view, view.exchange.replaced)} (route lock, EXCLUSIVE lock, write-rejecting trigger)`,
  async do(context) {
    context.freezeStartedAt = performance.now();
    let epoch = 0;
    const routersBehind: string[] = [];
    for (const slot of context.exchange.replaced) {
      // As a move's freeze: the fence goes ahead while the routers acknowledge, and ends their wait (a call that
      // reaches the node first waits for the fence's route lock, is refused with RSM01 and held by its router).
      const freezing = await beginSlotFreeze(context.catalog, [slot]);
      epoch = freezing.epoch;
      const [acked, fenced] = await Promise.allSettled([
        freezing.acknowledged,
        fenceSlot(context.node, context.tables, slot, context.exchange.clusterModulus, { epoch }).finally(() => freezing.stopWaiting()),
      ]);
      if (fenced.status === 'rejected') throw fenced.reason;
      if (acked.status === 'rejected') throw acked.reason;
      routersBehind.push(...acked.value.routersBehind);
    }
    context.freezeEpoch = epoch;
    return { epoch, routersBehind };
  },
  async undo(context) {
    const epoch = (await getCluster(context.catalog)).epoch;
    for (const slot of context.exchange.replaced) {
      await unfenceSlot(context.node, context.tables, slot, context.exchange.clusterModulus, epoch);
      await setSlotState(context.catalog, slot, 'active');
    }
  },
});

const sync = exchangeStep({
  name: 'sync',
  describeExchange: (view) => `on ${view.nodeName}, one round trip: the last catch-up round (the keys written before the fence), then the row sums of ${leaves(view, view.exchange.replaced)} against the staged leaves' (count and checksum, per table; each child's bound proven by its validated CHECK), scanned where rows hash by their text form`,
  async do(context) {
    const statements = context.catchUpStatements ??= await catchUpStatements(context.node, context.tables, context.exchange);
    const caughtUp = await catchUpChangedKeys(context.node, statements, [exchangeSumsSql(context.tables, context.exchange)]);
    const comparisons = await compareExchange(context.node, context.tables, context.exchange, exchangeSumsOf(caughtUp.after[0]!));
    const differing = comparisons.filter((comparison) => !comparison.equal);
    if (differing.length > 0) {
      throw new Error(`the ${context.kind} copy differs from the slot: ${differing.map((comparison) => `${comparison.table} ${comparison.stagedRows.join(' + ')} rows staged, ${comparison.replacedRows} in the slot (by ${comparison.by})`).join('; ')}`);
    }
    return {
      rows: comparisons.reduce((total, comparison) => total + comparison.replacedRows, 0),
      caughtUpInFreeze: caughtUp.changes,
      childRows: context.exchange.replacements.map((_, index) => comparisons.reduce((total, comparison) => total + comparison.stagedRows[index]!, 0)),
      tablesBySums: comparisons.filter((comparison) => comparison.by === 'sums').length,
      tablesByScan: comparisons.filter((comparison) => comparison.by === 'scan').length,
    };
  },
});

const attach = exchangeStep({
  name: 'attach',
  describeExchange: (view) => `on ${view.nodeName}, one transaction with the parents locked ACCESS EXCLUSIVE: DETACH ${leaves(view, view.exchange.replaced)}, rename them retired, ATTACH the leaves of ${bounds(view)}; node slot state owned`,
  async do(context) {
    // The freeze's epoch (no catalog read in the write pause): this migration holds the running place, so nothing
    // but its own freeze changed the map since.
    const epoch = context.freezeEpoch ?? (await getCluster(context.catalog)).epoch;
    const exchanged = await exchangeLeaves(context.node, context.tables, context.exchange, epoch);
    return { epoch, attempts: exchanged.attempts, exchangeMs: Math.round(exchanged.lockedMs * 10) / 10 };
  },
  async undo(context) {
    const epoch = (await getCluster(context.catalog)).epoch;
    await undoLeafExchange(context.node, context.tables, context.exchange, context.replacedModulus, epoch);
  },
});

const switchStep = exchangeStep({
  name: 'switch',
  pointOfNoReturn: true,
  describeExchange: (view) => view.kind === 'split'
    ? `catalog, one statement: slot ${view.exchange.replaced[0]} gets modulus ${view.exchange.replacements[0]!.modulus}, slot ${view.exchange.replacements[1]!.slot} is added on ${view.nodeName}, epoch + 1, notify (point of no return: afterwards a merge takes it back)`
    : `catalog, one statement: slot ${view.exchange.replaced[1]} is removed, slot ${view.exchange.replacements[0]!.slot} gets modulus ${view.exchange.replacements[0]!.modulus}, epoch + 1, notify (point of no return: afterwards a split takes it back)`,
  async do(context) {
    const epoch = context.kind === 'split'
      ? await recordSlotSplit(context.catalog, context.exchange.replaced[0]!, context.exchange.replacements[0]!.modulus, context.highOwner)
      : await recordSlotMerge(context.catalog, context.exchange.replacements[0]!.slot, context.exchange.replaced[1]!, context.exchange.replacements[0]!.modulus);
    const pauseMs = context.freezeStartedAt === undefined ? undefined : Math.round((performance.now() - context.freezeStartedAt) * 10) / 10;
    return { epoch, ...(pauseMs === undefined ? {} : { pauseMs }) };
  },
});

const cleanup = exchangeStep({
  name: 'cleanup',
  describeExchange: (view) => `on ${view.nodeName}: calls routed at a map before the switch are refused on these slots (RSM01: route the key again); forget the recorded keys and row sums of the retired leaves and DROP them (standalone since the exchange); drop the new leaves' bound CHECK with their row sums' triggers`,
  async do(context) {
    await barOlderRoutes(context.node, context.exchange, await slotChangedEpoch(context.catalog, context.exchange.replacements[0]!.slot));
    await forgetChangedKeys(context.node, retiredLeaves(context));
    await forgetRetiredRowSums(context.node, context.tables, context.exchange);
    await dropRetiredLeaves(context.node, context.tables, context.exchange, (table, slot) => untrackNewLeafStatements(table, context.exchange, slot));
  },
});

export function retiredLeaves(context: SlotExchangeContext): string[] {
  return context.tables.flatMap((table) => context.exchange.replaced.map((slot) => quoteQualified(table.schema, retiredLeafName(table, context.exchange, slot))));
}

/** The steps of a split or a merge on one node, in order. */
export const SLOT_EXCHANGE_STEPS: readonly ExchangeStep[] = [prepare, copy, freezeExchange, sync, attach, switchStep, cleanup];

/** The steps as --dry-run prints them. */
export function describeSlotExchange(view: SlotExchangeView): { step: DescribedStep['name']; action: string }[] {
  return SLOT_EXCHANGE_STEPS.map((listed) => ({ step: listed.name, action: listed.describeExchange(view) }));
}

