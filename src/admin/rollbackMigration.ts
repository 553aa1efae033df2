import type pg from 'pg';
import { getCluster } from '../catalog/cluster.js';
import {
  createMigration, finishMigration, getMigration, holdMigration, listMigrations, listMoves, migrationIsHeld, type MigrationRecord, type MoveRecord,
} from '../catalog/migrationRuns.js';
import { listNodes, setNodeState, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { listShardedTables } from '../catalog/tables.js';
import { ReshardError } from '../core/errors.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { runMigration, type MigrationSummary } from '../coordinator/runMigration.js';
import { assertDistinctDatabases } from '../mover/assertDistinctDatabases.js';
import { dropMigrationReplication, finishSwitchedMove, undoUnswitchedMove } from '../mover/revertMove.js';
import { connectNode } from '../plumbing/connectNode.js';
import { scheduleWaves } from '../planner/index.js';
import { slotExchangeOf, splitAllOf } from '../catalog/slotExchanges.js';
import { rollbackSlotExchange } from './slotExchange.js';
import { rollbackSplitAll, splitAllSummary } from './splitAllSlots.js';

export interface RollbackOptions {
  /** The latest migration when absent (only the latest can be rolled back). */
  migrationId?: number;
  /** Only this slot's move. */
  slot?: number;
  emit: MigrationEventSink;
  moveConcurrencyMax: number;
}

export interface RollbackResult {
  migrationId: number;
  /** Slots whose move had not switched: undone in place. */
  undoneSlots: number[];
  /** Slots that had switched: moved back by a new migration. */
  movedBackSlots: number[];
  /** Replication objects of the migration that were dropped. */
  dropped: string[];
  /** Sources of the migration that stay `draining` (weight 0): their `node remove` stands, the next `rebalance` drains them again. */
  drainingNodes: string[];
  /** The migration that moved switched slots back, when there were any. */
  moveBack?: MigrationSummary;
}

/**
 * Takes a migration (or one slot's move) back. Before its switch a move is
 * undone in place (the target's copy dropped, the source unfenced, the slot
 * thawed); after it, the slot is moved back by a new migration in the
 * reverse direction — the same journaled mover, not a separate code path.
 * Safe to repeat: every part is idempotent, and the catalog's owner of each
 * slot, not the journal, decides whether a move switched.
 */
export async function rollbackMigration(access: ClusterAccess, options: RollbackOptions): Promise<RollbackResult> {
  const lock = await connectCatalog(access, 'reshard rollback');
  let reverse: { mode: MigrationRecord['mode']; moves: MoveRecord[] } | undefined;
  let result: RollbackResult;
  try {
    await assertCatalogCurrent(lock);
    const migration = await chooseMigration(lock, options.migrationId);
    // A split --all is taken back by merging what it split, one slot at a time, as one migration.
    const splitAll = await splitAllOf(lock, migration.id);
    if (splitAll) {
      await lock.end().catch(() => {});
      const taken = await rollbackSplitAll(access, migration.id, splitAll, options.emit);
      return {
        migrationId: migration.id, undoneSlots: taken.undoneSlots, movedBackSlots: taken.mergedSlots, dropped: [], drainingNodes: [],
        ...(taken.merge ? { moveBack: splitAllSummary(taken.merge) } : {}),
      };
    }
    // A split or a merge is taken back by its own machine (in place before its switch, by its inverse after).
    const exchange = await slotExchangeOf(lock, migration.id);
    if (exchange) {
      await lock.end().catch(() => {});
      const taken = await rollbackSlotExchange(access, migration.id, exchange);
      return { migrationId: migration.id, undoneSlots: taken.switched ? [] : [exchange.slot], movedBackSlots: taken.switched ? [exchange.slot] : [], dropped: [], drainingNodes: [] };
    }
    if (!(await holdMigration(lock, migration.id))) throw runningElsewhere(migration.id);
    const moves = (await listMoves(lock, migration.id)).filter((move) => options.slot === undefined || move.slot === options.slot);
    if (options.slot !== undefined && moves.length === 0) {
      throw new ReshardError('not_found', `migration ${migration.id} has no move of slot ${options.slot}`, `see its moves with \`reshard status\``);
    }
    const owners = (await readSlotMap(lock)).owners;
    const switched = moves.filter((move) => owners[move.slot] === move.target);
    const unswitched = moves.filter((move) => owners[move.slot] !== move.target);
    for (const move of unswitched) {
      if (owners[move.slot] !== move.source) {
        throw new ReshardError('precondition', `slot ${move.slot} is owned by ${owners[move.slot]}, neither the source nor the target of its move in migration ${migration.id}`,
          'a later change moved it; roll back the latest migration only');
      }
    }
    if (options.slot !== undefined && migration.mode === 'online' && unswitched.length > 0 && migration.state !== 'completed') {
      throw new ReshardError('precondition', `slot ${options.slot} has not switched and shares its replication stream with the other slots of migration ${migration.id}`,
        'roll back the whole migration: `reshard rollback`');
    }
    const nodes = new Map((await listNodes(lock, { includeRemoved: true })).map((node) => [node.name, node]));
    const tables = (await listShardedTables(lock)).map((table) => ({ schema: table.schema, name: table.name, shardKey: table.shardKey }));
    const { modulus } = await getCluster(lock);
    const sessions = new Map<string, pg.Client>();
    const session = async (name: string): Promise<pg.Client> => {
      let client = sessions.get(name);
      if (!client) {
        client = await connectNode(requireNode(nodes, name), access.passwords, 'reshard rollback');
        sessions.set(name, client);
      }
      return client;
    };
    let dropped: string[] = [];
    try {
      // Undo drops the target's copy and cleanup the source's leaves: never when both ends are one database.
      for (const pair of new Set(moves.map((move) => JSON.stringify([move.source, move.target])))) {
        const [source, target] = JSON.parse(pair) as [string, string];
        await assertDistinctDatabases(lock, { node: requireNode(nodes, source), session: await session(source) }, { node: requireNode(nodes, target), session: await session(target) });
      }
      const reason = options.slot === undefined ? `migration ${migration.id} rolled back` : `slot ${options.slot} rolled back`;
      if (options.slot === undefined) {
        const involved = [...new Set(moves.flatMap((move) => [move.source, move.target]))].sort();
        dropped = await dropMigrationReplication(await Promise.all(involved.map(session)), migration.id);
      }
      for (const move of unswitched) {
        await undoUnswitchedMove({ migrationId: migration.id, slot: move.slot, modulus, tables, sourceName: move.source, targetName: move.target, source: await session(move.source), target: await session(move.target), catalog: lock }, reason);
      }
      for (const move of switched) {
        await finishSwitchedMove({ migrationId: migration.id, slot: move.slot, modulus, tables, sourceName: move.source, targetName: move.target, source: await session(move.source), target: await session(move.target), catalog: lock });
      }
    } finally {
      await Promise.all([...sessions.values()].map((client) => client.end().catch(() => {})));
    }
    if (options.slot === undefined) await finishMigration(lock, migration.id, 'rolled_back', `rolled back on request; ${switched.length} switched slot(s) moved back`);
    // A rollback undoes the migration, not the `reshard node remove` that asked for it: a
    // drained node takes its slots back and serves them, still `draining` with weight 0, so
    // its state and its weight agree and the next `rebalance` drains it again, as asked.
    // (Setting it `active` left an active node of weight 0, which every plan empties.)
    // One already retired (`removed`) by the migration's completion owns slots again: draining.
    const takingSlotsBack = new Set(switched.map((move) => move.source));
    for (const name of takingSlotsBack) {
      if (requireNode(nodes, name).state === 'removed') await setNodeState(lock, name, 'draining');
    }
    const drainingNodes = [...new Set(moves.map((move) => move.source))].sort().filter((name) => {
      const before = requireNode(nodes, name).state;
      return before === 'draining' || (before === 'removed' && takingSlotsBack.has(name));
    });
    result = { migrationId: migration.id, undoneSlots: unswitched.map((move) => move.slot), movedBackSlots: switched.map((move) => move.slot), dropped, drainingNodes };
    if (switched.length > 0) reverse = { mode: migration.mode, moves: switched };
  } finally {
    await lock.end().catch(() => {});
  }
  if (!reverse) return result;
  const moveBackId = await createMoveBack(access, result.migrationId, reverse.mode, reverse.moves);
  const moveBack = await runMigration(moveBackId, { access, emit: options.emit, moveConcurrencyMax: options.moveConcurrencyMax });
  return { ...result, moveBack };
}

async function chooseMigration(catalog: pg.ClientBase, requested: number | undefined): Promise<MigrationRecord> {
  const latest = (await listMigrations(catalog, 1))[0];
  if (!latest) throw new ReshardError('not_found', 'no migration has run on this cluster', 'there is nothing to roll back');
  const migration = requested === undefined ? latest : await getMigration(catalog, requested);
  if (migration.id !== latest.id) {
    throw new ReshardError('precondition', `migration ${migration.id} is not the latest (${latest.id} is)`, `roll back migration ${latest.id} first`);
  }
  if (migration.state === 'rolled_back' || migration.state === 'cancelled') {
    throw new ReshardError('precondition', `migration ${migration.id} is already ${migration.state.replace('_', ' ')}`, 'there is nothing to roll back');
  }
  if (migration.state === 'running' && (await migrationIsHeld(catalog, migration.id))) throw runningElsewhere(migration.id);
  return migration;
}

function runningElsewhere(id: number): ReshardError {
  return new ReshardError('conflict', `migration ${id} is being run by another reshard process`, 'stop it first (`reshard cancel`, or end that process), then roll back');
}

function requireNode(nodes: Map<string, NodeRecord>, name: string): NodeRecord {
  const node = nodes.get(name);
  if (!node) throw new ReshardError('not_found', `node ${name} of the migration is no longer in the catalog`, 'add it back with `reshard node add`');
  return node;
}

/** Records the migration that moves switched slots back to where they came from. */
async function createMoveBack(access: ClusterAccess, migrationId: number, mode: MigrationRecord['mode'], moves: readonly MoveRecord[]): Promise<number> {
  const catalog = await connectCatalog(access, 'reshard rollback');
  try {
    const nodes = new Map((await listNodes(catalog)).map((node) => [node.name, node]));
    const back = moves.map((move) => ({ slot: move.slot, from: move.target, to: move.source, bytes: move.bytesTotal }));
    const { moves: scheduled } = scheduleWaves(back, (name) => nodes.get(name)?.concurrencyMax ?? 1);
    return await createMigration(catalog, {
      mode,
      baseEpoch: (await getCluster(catalog)).epoch,
      plan: { rollbackOf: migrationId, moves: scheduled },
      moves: scheduled.map((move) => ({ slot: move.slot, source: move.from, target: move.to, wave: move.wave, bytesTotal: move.bytes })),
    });
  } finally {
    await catalog.end().catch(() => {});
  }
}
