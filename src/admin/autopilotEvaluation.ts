import { slotCountsByNode, slotIds, slotOwner } from '../core/slotMap.js';
import type pg from 'pg';
import { isAutopilotMigration, slotsMovedByAutopilotWithin } from '../catalog/autopilotDecisions.js';
import { migrationIsHeld, resumableMigration, unfinishedMoves } from '../catalog/migrationRuns.js';
import { listNodes } from '../catalog/nodes.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { listShardedTables } from '../catalog/tables.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { insideWindows } from '../core/timeWindows.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { loadTriggers, nodeShares, planLoadMoves, type LoadPlan, type LoadTrigger, type NodeShare, type SlotLoadOf } from '../planner/index.js';
import { measureSlotBytes } from './clusterSnapshot.js';
import { balancingNodes, NodeLoadSampler, routerLoadPeriods, type LoadSource, type SlotLoadFigures } from './loadReport.js';
import { MOVE_BYTES_FLOOR, type AutopilotSettings } from './autopilotSettings.js';

/** A trigger the autopilot considered, with its numbers; `fired` ones call for action. */
export type AutopilotTrigger =
  | ({ kind: 'load' } & LoadTrigger)
  | { kind: 'node-added' | 'node-draining'; node: string; fired: boolean; slots: number; reason: string };

export type AutopilotAction = 'none' | 'start-load' | 'start-nodes' | 'resume' | 'wait' | 'plan-only';

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
  /** The moves by load it would make now (present when a load trigger fired). */
  plan: LoadPlan | undefined;
  action: AutopilotAction;
  /** What it would do when in a window (the same as `action` inside one). */
  intent: Exclude<AutopilotAction, 'plan-only'>;
  reason: string;
  /** Mean load per slot over the measured periods (slot id → load), for the planner at the moment it acts. */
  slotLoads: Map<number, number>;
}

/** What a long-running autopilot keeps between periods: node readings when no router reports. */
export interface AutopilotMemory {
  sampler?: NodeLoadSampler;
  nodePeriods: SlotLoadFigures[][];
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

    const migration = await migrationState(catalog);
    const coolingSlots = await slotsMovedByAutopilotWithin(catalog, settings.cooldownMs);
    const loadFired = load.some((trigger) => trigger.fired);
    const plan = loadFired
      ? planLoadMoves({
        nodes: balancing, slots: meanSlots, tolerance: settings.tolerance, loadFloor: settings.loadFloor,
        benefitPerByteMin: settings.benefitPerMiBMin / 1_048_576, moveBytesFloor: MOVE_BYTES_FLOOR,
        excludedSlots: new Set(coolingSlots), movesMax: settings.movesMax,
      })
      : undefined;
    const inWindow = insideWindows(settings.windows, now);
    const { intent, reason } = decide(triggers, plan, migration, withLoad.length, settings);
    const acting = intent === 'start-load' || intent === 'start-nodes' || intent === 'resume';
    return {
      at: now.toISOString(), inWindow, windows: settings.windows.map((window) => window.text),
      source: measured.source, unit: measured.source === 'routers' ? 'calls/s' : measured.source === 'nodes' ? 'scans+writes/s' : '',
      routers: measured.routers, periodMs: settings.periodMs, sustainPeriods: settings.sustainPeriods, periodsMeasured: withLoad.length,
      nodes: nodeShares(balancing, meanSlots), triggers, migration, coolingSlots, plan,
      action: acting && !inWindow ? 'plan-only' : intent, intent,
      reason: acting && !inWindow ? `outside the windows (${settings.windows.map((window) => window.text).join(', ')} UTC): would ${reason}` : reason,
      slotLoads,
    };
  });
}

function decide(
  triggers: readonly AutopilotTrigger[], plan: LoadPlan | undefined, migration: AutopilotEvaluation['migration'], periodsMeasured: number, settings: AutopilotSettings,
): { intent: AutopilotEvaluation['intent']; reason: string } {
  if (migration) {
    const by = migration.byAutopilot ? 'started by the autopilot' : 'started by hand';
    if (migration.held) return { intent: 'wait', reason: `migration ${migration.id} (${by}) is running: nothing else starts beside it` };
    if (migration.byAutopilot) return { intent: 'resume', reason: `resume migration ${migration.id}, which the autopilot started and was interrupted (${migration.state})` };
    return { intent: 'wait', reason: `migration ${migration.id} (${by}) was interrupted (${migration.state}): the autopilot leaves it to \`reshard resume\` or \`reshard rollback\`` };
  }
  const nodeTriggers = triggers.filter((trigger) => trigger.kind !== 'load' && trigger.fired);
  if (nodeTriggers.length > 0) {
    return { intent: 'start-nodes', reason: `rebalance slots at once: ${nodeTriggers.map((trigger) => `${trigger.node} ${trigger.reason}`).join('; ')}` };
  }
  const fired = triggers.filter((trigger) => trigger.kind === 'load' && trigger.fired);
  if (fired.length === 0) {
    if (periodsMeasured === 0) return { intent: 'none', reason: 'no load measured yet (no router reported and no node reading to compare)' };
    const pending = triggers.filter((trigger) => trigger.kind === 'load' && trigger.periodsOver > 0);
    return pending.length > 0
      ? { intent: 'none', reason: `${pending.map((trigger) => trigger.node).join(', ')} over its share but not for ${settings.sustainPeriods} periods in a row yet` }
      : { intent: 'none', reason: `every node within ${(settings.tolerance * 100).toFixed(0)} % (or ${settings.loadFloor} load) of its weighted share` };
  }
  if (!plan || plan.moves.length === 0) {
    const why = plan?.unresolved.map((entry) => `${entry.node}: ${entry.reason}`).join('; ') ?? 'no plan';
    return { intent: 'none', reason: `${fired.map((trigger) => trigger.node).join(', ')} over-loaded, but no move helps: ${why}` };
  }
  const moves = plan.moves.map((move) => `slot ${move.slot} ${move.from}→${move.to} (${move.load.toFixed(1)} load, ${move.bytes} bytes)`).join(', ');
  return { intent: 'start-load', reason: `move ${plan.moves.length} slot(s) by load: ${moves}` };
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
