import type pg from 'pg';
import { getCluster, type ClusterRecord } from '../catalog/cluster.js';
import type { JournalEntry } from '../catalog/journal.js';
import { failedStepsAfter, freezeAgesMs, latestControlEntry, readJournalTail } from '../catalog/journalTail.js';
import type { MigrationControl } from '../catalog/migrationControl.js';
import { listMigrationHistory, type MigrationHistoryEntry } from '../catalog/migrationHistory.js';
import { listMigrations, type MigrationRecord, type MoveRecord } from '../catalog/migrationRuns.js';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { inReadOnlySnapshot } from '../catalog/readOnlySnapshot.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { readMigrationState } from './migrationStatus.js';

export { assertCatalogCurrent } from '../catalog/schema.js';
export type { ClusterRecord, JournalEntry, MigrationControl, MigrationHistoryEntry, MigrationRecord, MoveRecord, NodeRecord, ShardedTableRecord, SlotMapWithStates };

/** Everything one dashboard poll reads of the catalog, in one REPEATABLE READ transaction so the parts agree. */
export interface ClusterActivity {
  cluster: ClusterRecord;
  nodes: NodeRecord[];
  tables: ShardedTableRecord[];
  slotMap: SlotMapWithStates;
  latest: MigrationRecord | undefined;
  moves: MoveRecord[];
  control: MigrationControl;
  held: boolean;
  freezeAges: Map<number, number>;
  history: MigrationHistoryEntry[];
  journal: JournalEntry[];
  /** The latest migration's newest pause or cancel entry: read apart from the tail, which other entries can push it out of. */
  controlEntry: JournalEntry | undefined;
  /** Slots of the latest migration whose switch is done (cleanup may still be pending). */
  switched: Set<number>;
  /** Failed steps journaled since the last read, oldest first: the error counter's input. */
  failures: JournalEntry[];
  /** The journal id up to which `failures` holds every failure: the next read starts after it. */
  failuresReadUpToId: number;
}

/** Failures counted per poll at most; the rest are counted by the next polls. */
const FAILURES_PER_POLL_MAX = 1_000;

export async function readClusterActivity(catalog: pg.ClientBase, eventsMax: number, failuresReadUpToId: number): Promise<ClusterActivity> {
  return inReadOnlySnapshot(catalog, async () => {
    const cluster = await getCluster(catalog);
    const nodes = await listNodes(catalog);
    const tables = await listShardedTables(catalog);
    const slotMap = await readSlotMap(catalog);
    const latest = (await listMigrations(catalog, 1))[0];
    const running = latest?.state === 'running';
    const state = await readMigrationState(catalog, latest);
    const journal = await readJournalTail(catalog, eventsMax);
    // Read in the same snapshot as the tail: every failure up to its newest entry is in this batch, unless the batch is full.
    const failures = await failedStepsAfter(catalog, failuresReadUpToId, FAILURES_PER_POLL_MAX);
    const read: ClusterActivity = {
      cluster, nodes, tables, slotMap, latest,
      ...state,
      freezeAges: running ? await freezeAgesMs(catalog, latest.id) : new Map(),
      history: await listMigrationHistory(catalog, 20),
      journal,
      controlEntry: latest ? await latestControlEntry(catalog, latest.id) : undefined,
      failures,
      failuresReadUpToId: failures.length === FAILURES_PER_POLL_MAX
        ? failures.at(-1)!.id
        : Math.max(failuresReadUpToId, journal[0]?.id ?? 0, failures.at(-1)?.id ?? 0),
    };
    return read;
  });
}
