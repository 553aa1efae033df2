import { readFreezePhases, readFreezeRoundTrips, type FreezePhasesMs, type FreezeRoundTrips } from '../catalog/freezePhases.js';
import { latestControlEntry } from '../catalog/journalTail.js';
import { listMigrationFailures, type MigrationFailure } from '../catalog/migrationFailures.js';
import { readControl, type MigrationControl } from '../catalog/migrationControl.js';
import { getMigration, listMigrations, listMoves, migrationIsHeld, type MigrationRecord, type MoveRecord } from '../catalog/migrationRuns.js';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { switchedSlots } from '../catalog/switchedSlots.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import type { Queryable } from '../plumbing/queryable.js';
import { slotOfAnyLeafName } from '../node/leafName.js';
import { connectNode, type PasswordLookup } from '../plumbing/connectNode.js';
import { migrationReplicationPrefix } from '../node/replication.js';
import { reshardReplicationStreams } from '../node/replicationStatus.js';

export type { MigrationRecord, MoveRecord, NodeRecord };

/** A migration as `reshard status` (and `status --watch`, `wait`) shows it, read in one catalog session. */
export interface MigrationStatus {
  /** The given migration, else the latest; undefined when none ever ran. */
  migration: MigrationRecord | undefined;
  /** The latest migrations, newest first. */
  history: MigrationRecord[];
  moves: MoveRecord[];
  /** A coordinator holds the migration (running and not held = interrupted). */
  held: boolean;
  control: MigrationControl;
  /** Since when its coordinator holds at a checkpoint for a pause, when it does. */
  pausedSince: Date | undefined;
  /** Slots whose switch is done (cleanup may still run). */
  switched: Set<number>;
  /** Per switched online move, how long each phase of its freeze took. */
  freezePhases: Map<number, FreezePhasesMs>;
  /** Per switched online move, the sequential round trips of its freeze, in all and per phase. */
  freezeRoundTrips: Map<number, FreezeRoundTrips>;
  nodes: NodeRecord[];
  /** Every time the migration stopped failed, oldest first: `resume` clears its error, these stay. */
  failures: MigrationFailure[];
}

export async function readMigrationStatus(access: ClusterAccess, migrationId?: number): Promise<MigrationStatus> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const history = await listMigrations(catalog, 10);
    const migration = migrationId === undefined ? history[0] : await getMigration(catalog, migrationId);
    const state = await readMigrationState(catalog, migration);
    const controlEntry = migration?.state === 'running' && state.control === 'pause' ? await latestControlEntry(catalog, migration.id) : undefined;
    return {
      migration,
      history,
      ...state,
      pausedSince: controlEntry?.step === 'pause' && controlEntry.action === 'begin' ? controlEntry.at : undefined,
      freezePhases: migration ? await readFreezePhases(catalog, migration.id) : new Map(),
      freezeRoundTrips: migration ? await readFreezeRoundTrips(catalog, migration.id) : new Map(),
      nodes: await listNodes(catalog, { includeRemoved: true }),
      failures: migration ? await listMigrationFailures(catalog, migration.id) : [],
    };
  });
}

/** One migration's moves, whether a coordinator holds it, the operator's request and its switched slots: what `reshard status` and the dashboard both show. */
export interface MigrationState {
  moves: MoveRecord[];
  held: boolean;
  control: MigrationControl;
  switched: Set<number>;
}

/** Reads `migration`'s state on `catalog` (inside the caller's transaction when it has one); no migration, an empty state. */
export async function readMigrationState(catalog: Queryable, migration: MigrationRecord | undefined): Promise<MigrationState> {
  if (!migration) return { moves: [], held: false, control: 'run', switched: new Set() };
  return {
    moves: await listMoves(catalog, migration.id),
    held: migration.state === 'running' ? await migrationIsHeld(catalog, migration.id) : false,
    control: await readControl(catalog, migration.id),
    switched: await switchedSlots(catalog, migration.id),
  };
}

/**
 * Apply lag of each unfinished online move, from its source: the stream
 * (publication = subscription name) that carries the slot's leaves.
 * A source that cannot be reached shows no lag rather than failing `status`.
 */
export async function replicationLagBySlot(status: MigrationStatus, passwords: PasswordLookup): Promise<Map<number, number | undefined>> {
  const lagBySlot = new Map<number, number | undefined>();
  const { migration } = status;
  if (migration?.state !== 'running' || migration.mode !== 'online') return lagBySlot;
  const prefix = migrationReplicationPrefix(migration.id);
  for (const name of new Set(status.moves.filter((move) => move.state !== 'done').map((move) => move.source))) {
    const node = status.nodes.find((candidate) => candidate.name === name);
    if (!node) continue;
    const client = await connectNode(node, passwords, 'reshard status').catch(() => undefined);
    if (!client) continue;
    try {
      for (const stream of (await reshardReplicationStreams(client)).filter((candidate) => candidate.name.startsWith(prefix))) {
        for (const leaf of stream.leaves) {
          const slot = slotOfAnyLeafName(leaf);
          if (slot !== undefined) lagBySlot.set(slot, stream.lagBytes);
        }
      }
    } finally {
      await client.end().catch(() => {});
    }
  }
  return lagBySlot;
}
