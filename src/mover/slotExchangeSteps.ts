import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import { recordSlotMerge, recordSlotSplit, setSlotState, slotChangedEpoch } from '../catalog/slotMap.js';
import { fenceSlot, unfenceSlot } from '../node/fence.js';
import { leafName } from '../node/leafName.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import type { SlotTable } from '../node/slotPartitions.js';
import {
  barOlderRoutes, copyIntoReplacementLeaves, dropReplacementLeaves, dropRetiredLeaves, exchangeLeaves, exchangeRowCounts,
  stageReplacementLeaves, undoLeafExchange, type LeafExchange,
} from '../node/splitLeaves.js';
import { freezeSlotForRouters } from './freezeSlot.js';
import type { DescribedStep, MoveStep } from './moveStep.js';

/**
 * A split (slot r of m → r and r + m of 2m) or a merge (the reverse) on the
 * slot's own node, as named steps on the one step runner. Everything runs on
 * that node: the rows are copied by INSERT … SELECT from the fenced leaf into
 * staged leaves (no network, no subscription — a node cannot subscribe to
 * its own tables), then one node transaction exchanges the leaves (DETACH,
 * renames, ATTACH proven by CHECK) under the parents' ACCESS EXCLUSIVE lock
 * for milliseconds, then the catalog switches. Writes to the slot pause from
 * the freeze to the switch, so for the copy of the slot's rows: the slot is
 * fenced while it is copied (the copy-then-catch-up version is issue 14's next step).
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
}

/** What `describe` of an exchange step may show. */
export interface SlotExchangeView {
  kind: 'split' | 'merge';
  nodeName: string;
  tables: readonly SlotTable[];
  exchange: LeafExchange;
  replacedModulus: number;
}

function leaves(view: SlotExchangeView, slots: readonly number[]): string {
  return view.tables.flatMap((table) => slots.map((slot) => leafName(table.name, slot, view.exchange.clusterModulus))).join(', ');
}

function bounds(view: SlotExchangeView): string {
  return view.exchange.replacements.map(({ slot, modulus }) => `(${modulus}, ${slot})`).join(' and ');
}

type ExchangeStep = MoveStep<SlotExchangeContext> & { describeExchange(view: SlotExchangeView): string };

function step(definition: Omit<ExchangeStep, 'describe'>): ExchangeStep {
  // The runner's MovePlanView does not fit an exchange; dry-run uses describeExchange.
  return { ...definition, describe: () => definition.name };
}

const prepare = step({
  name: 'prepare',
  describeExchange: (view) => `on ${view.nodeName}: create the leaves of ${bounds(view)} standalone, shaped like the parents, each with CHECK satisfies_hash_partition(parent, modulus, remainder, key)`,
  async do(context) {
    await installNodeHelpers(context.node);
    await stageReplacementLeaves(context.node, context.tables, context.exchange);
  },
  async undo(context) {
    await dropReplacementLeaves(context.node, context.tables, context.exchange);
  },
});

const freeze = step({
  name: 'freeze',
  describeExchange: (view) => `slot${view.exchange.replaced.length > 1 ? 's' : ''} ${view.exchange.replaced.join(' and ')} frozen in the catalog (routers hold their calls); on ${view.nodeName}: fence ${leaves(view, view.exchange.replaced)} (route lock, EXCLUSIVE lock, write-rejecting trigger)`,
  async do(context) {
    context.freezeStartedAt = performance.now();
    let epoch = 0;
    const routersBehind: string[] = [];
    for (const slot of context.exchange.replaced) {
      const frozen = await freezeSlotForRouters(context.catalog, slot);
      epoch = frozen.epoch;
      routersBehind.push(...frozen.routersBehind);
      await fenceSlot(context.node, context.tables, slot, context.exchange.clusterModulus, { epoch });
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

const copy = step({
  name: 'copy',
  describeExchange: (view) => `on ${view.nodeName}: INSERT … SELECT the rows of ${leaves(view, view.exchange.replaced)} into the staged leaves of ${bounds(view)}, by satisfies_hash_partition (local, one transaction)`,
  async do(context) {
    return copyIntoReplacementLeaves(context.node, context.tables, context.exchange);
  },
});

const verify = step({
  name: 'verify',
  describeExchange: (view) => `on ${view.nodeName}: the staged leaves hold as many rows as ${leaves(view, view.exchange.replaced)}, per table`,
  async do(context) {
    const counts = await exchangeRowCounts(context.node, context.tables, context.exchange);
    const differing = counts.filter((count) => count.replaced !== count.staged);
    if (differing.length > 0) {
      throw new Error(`the ${context.kind} copy differs from the slot: ${differing.map((count) => `${count.table} ${count.staged} rows staged, ${count.replaced} in the slot`).join('; ')}`);
    }
    return { rows: counts.reduce((total, count) => total + count.staged, 0) };
  },
});

const attach = step({
  name: 'attach',
  describeExchange: (view) => `on ${view.nodeName}, one transaction with the parents locked ACCESS EXCLUSIVE: DETACH ${leaves(view, view.exchange.replaced)}, rename them retired, ATTACH the leaves of ${bounds(view)}; node slot state owned`,
  async do(context) {
    const epoch = (await getCluster(context.catalog)).epoch;
    const exchanged = await exchangeLeaves(context.node, context.tables, context.exchange, epoch);
    return { epoch, attempts: exchanged.attempts, exchangeMs: Math.round(exchanged.lockedMs * 10) / 10 };
  },
  async undo(context) {
    const epoch = (await getCluster(context.catalog)).epoch;
    await undoLeafExchange(context.node, context.tables, context.exchange, context.replacedModulus, epoch);
  },
});

const switchStep = step({
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

const cleanup = step({
  name: 'cleanup',
  describeExchange: (view) => `on ${view.nodeName}: calls routed at a map before the switch are refused on these slots (RSM01: route the key again); DROP the retired leaves (standalone since the exchange) and the bound CHECK of the new leaves`,
  async do(context) {
    await barOlderRoutes(context.node, context.exchange, await slotChangedEpoch(context.catalog, context.exchange.replacements[0]!.slot));
    await dropRetiredLeaves(context.node, context.tables, context.exchange);
  },
});

/** The steps of a split or a merge on one node, in order. */
export const SLOT_EXCHANGE_STEPS: readonly ExchangeStep[] = [prepare, freeze, copy, verify, attach, switchStep, cleanup];

/** The steps as --dry-run prints them. */
export function describeSlotExchange(view: SlotExchangeView): { step: DescribedStep['name']; action: string }[] {
  return SLOT_EXCHANGE_STEPS.map((exchangeStep) => ({ step: exchangeStep.name, action: exchangeStep.describeExchange(view) }));
}

