import { SLOT_MODULUS_MAX } from '../core/hash.js';
import { slotCountsByNode, slotIds, slotModulus, slotOwner } from '../core/slotMap.js';
import type pg from 'pg';
import { isAutopilotMigration, slotsMovedByAutopilotWithin } from '../catalog/autopilotDecisions.js';
import { migrationIsHeld, resumableMigration, unfinishedMoves } from '../catalog/migrationRuns.js';
import { listNodes } from '../catalog/nodes.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { listShardedTables } from '../catalog/tables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { insideWindows } from '../core/timeWindows.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import {
  headroomTriggers, loadTriggers, nodeShares, planHeadroomMoves, planLoadMoves, type HeadroomTrigger, type LoadPlan, type NodeSpace, type SplitCandidate, hotSlotSplit, type LoadTrigger, type NodeShare, type SlotLoadOf,
} from '../planner/index.js';
import { measureSpaces } from '../coordinator/nodeSpaces.js';
import { measureSlotBytes } from './clusterSnapshot.js';
import { balancingNodes, NodeLoadSampler, routerLoadPeriods, type LoadSource, type SlotLoadFigures } from './loadReport.js';
import { MOVE_BYTES_FLOOR, type AutopilotSettings } from './autopilotSettings.js';

/** A trigger the autopilot considered, with its numbers; `fired` ones call for action. */
export type AutopilotTrigger =
  | ({ kind: 'load' } & LoadTrigger)
  /** Bytes against the weighted share, like load (loads/fairLoads are bytes here). */
  | ({ kind: 'bytes' } & LoadTrigger)
  | ({ kind: 'headroom' } & HeadroomTrigger)
  | { kind: 'node-added' | 'node-draining'; node: string; fired: boolean; slots: number; reason: string };

export type AutopilotAction = 'none' | 'start-load' | 'start-nodes' | 'start-headroom' | 'start-split' | 'start-bytes' | 'resume' | 'wait' | 'plan-only';

/** The actions that start or continue a migration. */
export const ACTING_AUTOPILOT_ACTIONS: readonly AutopilotAction[] = ['start-load', 'start-nodes', 'start-headroom', 'start-split', 'start-bytes', 'resume'];

/** What the autopilot sees now and what it would do, and why. */
export interface AutopilotEvaluation {
  at: string;
  inWindow: boolean;
  windows: string[];
  source: LoadSource | 'none';
  unit: string;
  routers: number;
  periodMs: number;
  sustainPeriods: number;
  /** Periods with load, of the last sustainPeriods. */
  periodsMeasured: number;
  /** Each node's mean load over the measured periods against its weighted share. */
  nodes: NodeShare[];
  triggers: AutopilotTrigger[];
  migration: { id: number; state: string; held: boolean; byAutopilot: boolean } | undefined;
  coolingSlots: number[];
  /** The moves it would make now: by load, by headroom or by bytes, as `intent` says (present when such a trigger fired). */
  plan: LoadPlan | undefined;
  /** The split it would make now (present when a node is over-loaded by one slot that no move can place). */
  split: SplitCandidate | undefined;
  action: AutopilotAction;
  /** What it would do when in a window (the same as `action` inside one). */
  intent: Exclude<AutopilotAction, 'plan-only'>;
  reason: string;
  /** Mean load per slot over the measured periods (slot id → load), for the planner at the moment it acts. */
  slotLoads: Map<number, number>;
  /** Each node's space as measured, for a headroom plan at the moment it acts. */
  spaces: Map<string, NodeSpace>;
}

/** What a long-running autopilot keeps between periods: node readings when no router reports. */
export interface AutopilotMemory {
  sampler?: NodeLoadSampler;
  nodePeriods: SlotLoadFigures[][];
  /** Each node's bytes against its share at each of the last evaluations (latest first): bytes triggers are sustained over them too. */
  bytesPeriods?: NodeShare[][];
}

/** Reads the cluster's load, bytes and migrations and decides; changes nothing. */
export async function evaluateAutopilot(access: ClusterAccess, settings: AutopilotSettings, memory: AutopilotMemory | undefined, now = new Date()): Promise<AutopilotEvaluation> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const [nodes, tables, slotMap] = [await listNodes(catalog), await listShardedTables(catalog), await readSlotMap(catalog)];
    const slotBytes = await measureSlotBytes(nodes, tables, slotMap, access.passwords);
    const balancing = balancingNodes(nodes);
    const measured = await measurePeriods(catalog, access, settings, memory, nodes, tables, slotMap, slotBytes);
    const allSlots = (figures: readonly SlotLoadFigures[]): SlotLoadOf[] => {
      const load = new Map(figures.map((figure) => [figure.slot, figure.load]));
      return slotIds(slotMap).map((slot) => ({ slot, owner: slotOwner(slotMap, slot), load: load.get(slot) ?? 0, bytes: slotBytes[slot] ?? 0 }));
    };
    const periodShares = measured.periods.map((figures) => nodeShares(balancing, allSlots(figures)));
    const withLoad = measured.periods.filter((figures) => figures.some((figure) => figure.load > 0));
    const slotLoads = new Map<number, number>();
    for (const figures of withLoad) for (const figure of figures) slotLoads.set(figure.slot, (slotLoads.get(figure.slot) ?? 0) + figure.load / withLoad.length);
    const meanSlots = slotIds(slotMap).map((slot) => ({ slot, owner: slotOwner(slotMap, slot), load: slotLoads.get(slot) ?? 0, bytes: slotBytes[slot] ?? 0 }));

    const triggers: AutopilotTrigger[] = [];
    const slotCounts = new Map<string, number>();
    for (const [owner, count] of slotCountsByNode(slotMap)) slotCounts.set(owner, count);
    for (const node of nodes) {
      const slots = slotCounts.get(node.name) ?? 0;
      if ((node.state === 'active' || node.state === 'joining') && node.weight > 0) {
        triggers.push({ kind: 'node-added', node: node.name, fired: slots === 0, slots, reason: slots === 0 ? 'has weight but owns no slot: fill it at once' : `owns ${slots} slot(s)` });
      } else if (node.state === 'draining') {
        triggers.push({ kind: 'node-draining', node: node.name, fired: slots > 0, slots, reason: slots > 0 ? `draining with ${slots} slot(s) left: empty it at once` : 'drained' });
      }
    }
    const load = loadTriggers(periodShares, settings);
    triggers.push(...load.map((trigger) => ({ kind: 'load' as const, ...trigger })));
    // Bytes: each slot's size as its "load"; sustained over the evaluations a long-running autopilot remembers (one, for a one-off).
    const bytesSlots = meanSlots.map((slot) => ({ ...slot, load: slot.bytes }));
    const bytesNow = nodeShares(balancing, bytesSlots);
    const bytesPeriods = [bytesNow, ...(memory?.bytesPeriods ?? [])].slice(0, settings.sustainPeriods);
    if (memory) memory.bytesPeriods = bytesPeriods;
    const bytes = loadTriggers(bytesPeriods, { tolerance: settings.bytesTolerance, loadFloor: settings.bytesFloor, sustainPeriods: settings.sustainPeriods }, 'bytes');
    triggers.push(...bytes.map((trigger) => ({ kind: 'bytes' as const, ...trigger })));
    const spaces = await measureSpaces(nodes.filter((node) => node.state !== 'removed'), access.passwords);
    const headroom = headroomTriggers([...spaces.values()], settings.headroomFraction);
    triggers.push(...headroom.map((trigger) => ({ kind: 'headroom' as const, ...trigger })));

    const migration = await migrationState(catalog);
    const coolingSlots = await slotsMovedByAutopilotWithin(catalog, settings.cooldownMs);
    const plans: TriggerPlans = {
      headroom: headroom.some((trigger) => trigger.fired)
        ? planHeadroomMoves({
          nodes: balancing, slots: meanSlots, spaces, headroomFraction: settings.headroomFraction,
          short: headroom.filter((trigger) => trigger.fired).map((trigger) => trigger.node), excludedSlots: new Set(coolingSlots), movesMax: settings.movesMax,
        })
        : undefined,
      load: load.some((trigger) => trigger.fired)
        ? planLoadMoves({
          nodes: balancing, slots: meanSlots, tolerance: settings.tolerance, loadFloor: settings.loadFloor,
          benefitPerByteMin: settings.benefitPerMiBMin / 1_048_576, moveBytesFloor: MOVE_BYTES_FLOOR,
          excludedSlots: new Set(coolingSlots), movesMax: settings.movesMax,
        })
        : undefined,
      bytes: bytes.some((trigger) => trigger.fired)
        ? planLoadMoves({
          nodes: balancing, slots: bytesSlots, tolerance: settings.bytesTolerance, loadFloor: settings.bytesFloor,
          benefitPerByteMin: 0, moveBytesFloor: MOVE_BYTES_FLOOR, excludedSlots: new Set(coolingSlots), movesMax: settings.movesMax,
        })
        : undefined,
    };
    const overloaded = load.filter((trigger) => trigger.fired)
      .sort((a, b) => (b.loads[0]! - b.fairLoads[0]!) - (a.loads[0]! - a.fairLoads[0]!) || a.node.localeCompare(b.node)).map((trigger) => trigger.node);
    const split = overloaded.length === 0 ? undefined : hotSlotSplit({
      nodes: balancing, slots: meanSlots, overloaded, excludedSlots: new Set(coolingSlots),
      targets: nodes.filter((node) => node.state === 'active' && node.weight > 0).map((node) => node.name),
      splittable: (slot) => slotModulus(slotMap, slot) * 2 <= SLOT_MODULUS_MAX,
    });
    const inWindow = insideWindows(settings.windows, now);
    const { intent, reason, plan } = decide(triggers, plans, split, migration, withLoad.length, settings);
    const acting = ACTING_AUTOPILOT_ACTIONS.includes(intent);
    return {
      at: now.toISOString(), inWindow, windows: settings.windows.map((window) => window.text),
      source: measured.source, unit: measured.source === 'routers' ? 'calls/s' : measured.source === 'nodes' ? 'scans+writes/s' : '',
      routers: measured.routers, periodMs: settings.periodMs, sustainPeriods: settings.sustainPeriods, periodsMeasured: withLoad.length,
      nodes: nodeShares(balancing, meanSlots), triggers, migration, coolingSlots, plan, split: intent === 'start-split' ? split : undefined,
      action: acting && !inWindow ? 'plan-only' : intent, intent,
      reason: acting && !inWindow ? `outside the windows (${settings.windows.map((window) => window.text).join(', ')} UTC): would ${reason}` : reason,
      slotLoads,
      spaces,
    };
  });
}

/** The plans for the triggers that fired (computed whether or not they are acted on: the journal shows them). */
interface TriggerPlans {
  headroom: LoadPlan | undefined;
  load: LoadPlan | undefined;
  bytes: LoadPlan | undefined;
}

/**
 * One intent, in order of urgency: a migration in the way; nodes added or
 * draining; a node below its disk headroom (a full disk stops it); load over
 * shares; bytes over shares. A trigger whose plan moves nothing says why and
 * lets the next one speak.
 */
function decide(
  triggers: readonly AutopilotTrigger[], plans: TriggerPlans, split: SplitCandidate | undefined, migration: AutopilotEvaluation['migration'], periodsMeasured: number, settings: AutopilotSettings,
): { intent: AutopilotEvaluation['intent']; reason: string; plan: LoadPlan | undefined } {
  if (migration) {
    const by = migration.byAutopilot ? 'started by the autopilot' : 'started by hand';
    if (migration.held) return { intent: 'wait', reason: `migration ${migration.id} (${by}) is running: nothing else starts beside it`, plan: undefined };
    if (migration.byAutopilot) return { intent: 'resume', reason: `resume migration ${migration.id}, which the autopilot started and was interrupted (${migration.state})`, plan: undefined };
    return { intent: 'wait', reason: `migration ${migration.id} (${by}) was interrupted (${migration.state}): the autopilot leaves it to \`reshard resume\` or \`reshard rollback\``, plan: undefined };
  }
  const nodeTriggers = triggers.filter((trigger) => (trigger.kind === 'node-added' || trigger.kind === 'node-draining') && trigger.fired);
  if (nodeTriggers.length > 0) {
    return { intent: 'start-nodes', reason: `rebalance slots at once: ${nodeTriggers.map((trigger) => `${trigger.node} ${trigger.reason}`).join('; ')}`, plan: undefined };
  }
  const notHelping: string[] = [];
  const byPlan = (kind: 'headroom' | 'load' | 'bytes', intent: 'start-headroom' | 'start-load' | 'start-bytes', what: string): { intent: typeof intent; reason: string; plan: LoadPlan } | undefined => {
    const fired = triggers.filter((trigger) => trigger.kind === kind && trigger.fired);
    const plan = plans[kind];
    if (fired.length === 0 || !plan) return undefined;
    if (plan.moves.length === 0) {
      const why = plan.unresolved.map((entry) => `${entry.node}: ${entry.reason}`).join('; ') || 'no plan';
      notHelping.push(`${fired.map((trigger) => trigger.node).join(', ')} ${what}, but no move helps: ${why}`);
      return undefined;
    }
    const moves = plan.moves.map((move) => `slot ${move.slot} ${move.from}→${move.to} (${kind === 'load' ? `${move.load.toFixed(1)} load, ` : ''}${move.bytes} bytes)`).join(', ');
    const numbers = fired.map((trigger) => `${trigger.node}: ${trigger.reason}`).join('; ');
    return { intent, reason: `move ${plan.moves.length} slot(s) by ${kind}: ${moves} — ${numbers}`, plan };
  };
  const byHeadroomOrLoad = byPlan('headroom', 'start-headroom', 'below their disk headroom') ?? byPlan('load', 'start-load', 'over-loaded');
  if (byHeadroomOrLoad) return byHeadroomOrLoad;
  // Over-loaded and no move helps: one slot carries more than a node's share.
  if (split) return { intent: 'start-split', reason: `split slot ${split.slot} on ${split.from}: ${split.reason}`, plan: undefined };
  const byBytes = byPlan('bytes', 'start-bytes', 'over their share of bytes');
  if (byBytes) return byBytes;
  if (notHelping.length > 0) return { intent: 'none', reason: notHelping.join('; '), plan: plans.headroom ?? plans.load ?? plans.bytes };
  const pending = triggers.filter((trigger) => (trigger.kind === 'load' || trigger.kind === 'bytes') && trigger.periodsOver > 0);
  const pendingText = `${pending.map((trigger) => `${trigger.node} (${trigger.kind})`).join(', ')} over its share but not for ${settings.sustainPeriods} periods in a row yet`;
  if (periodsMeasured === 0) {
    return { intent: 'none', reason: `no load measured yet (no router reported and no node reading to compare)${pending.length > 0 ? `; ${pendingText}` : ''}`, plan: undefined };
  }
  return pending.length > 0
    ? { intent: 'none', reason: pendingText, plan: undefined }
    : { intent: 'none', reason: `every node within ${(settings.tolerance * 100).toFixed(0)} % (or ${settings.loadFloor} load) of its weighted share of load, within ${(settings.bytesTolerance * 100).toFixed(0)} % (or ${settings.bytesFloor} bytes) of its share of bytes, and above its disk headroom`, plan: undefined };
}

async function migrationState(catalog: pg.ClientBase): Promise<AutopilotEvaluation['migration']> {
  const latest = await resumableMigration(catalog);
  if (!latest) return undefined;
  // A failed migration that left nothing half-done is history, not work.
  if (latest.state === 'failed' && (await unfinishedMoves(catalog, latest.id)) === 0) return undefined;
  return { id: latest.id, state: latest.state, held: await migrationIsHeld(catalog, latest.id), byAutopilot: await isAutopilotMigration(catalog, latest.id) };
}

/** The last `sustainPeriods` periods of load (latest first): routers' reports when any, else the nodes' counters. */
async function measurePeriods(
  catalog: pg.ClientBase, access: ClusterAccess, settings: AutopilotSettings, memory: AutopilotMemory | undefined,
  nodes: Awaited<ReturnType<typeof listNodes>>, tables: Awaited<ReturnType<typeof listShardedTables>>, slotMap: SlotMapWithStates, slotBytes: readonly number[],
): Promise<{ source: LoadSource | 'none'; routers: number; periods: SlotLoadFigures[][] }> {
  const fromRouters = await routerLoadPeriods(catalog, slotMap, slotBytes, settings.periodMs, settings.sustainPeriods);
  if (fromRouters.routers > 0) return { source: 'routers', routers: fromRouters.routers, periods: fromRouters.periods };
  if (memory) {
    // Long-running: one reading per period, the difference to the last one is this period's load.
    memory.sampler ??= new NodeLoadSampler(nodes, tables, access.passwords);
    memory.sampler.setNodes(nodes);
    const sampled = await memory.sampler.sample(slotMap);
    if (sampled) memory.nodePeriods.unshift(sampled.slots);
    memory.nodePeriods.length = Math.min(memory.nodePeriods.length, settings.sustainPeriods);
    return { source: memory.nodePeriods.length > 0 ? 'nodes' : 'none', routers: 0, periods: memory.nodePeriods };
  }
  // One-off: two readings sampleMs apart give one period.
  const sampler = new NodeLoadSampler(nodes, tables, access.passwords);
  await sampler.sample(slotMap);
  await new Promise((resolve) => setTimeout(resolve, settings.sampleMs));
  const sampled = await sampler.sample(slotMap);
  return { source: 'nodes', routers: 0, periods: [sampled?.slots ?? []] };
}
