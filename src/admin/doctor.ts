import type pg from 'pg';
import { hasSlot, slotIds, slotModulus } from '../core/slotMap.js';
import { migrationIsHeld, migrationsInFlight, type MigrationInFlight } from '../catalog/migrationRuns.js';
import { databaseIdentityKey, describeDatabaseIdentity, recordNodeIdentity, sameDatabase } from '../catalog/nodeIdentity.js';
import { listNodes, type DatabaseIdentity, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { describeTable, listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { errorText, ReshardError } from '../core/errors.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { readDatabaseIdentity } from '../node/databaseIdentity.js';
import { fencedLeaves, unfenceSlot } from '../node/fence.js';
import { changeRecordingLeaves, endChangeRecording } from '../node/changeRecording.js';
import { readReplicationSettings, readSessionTimeouts, type ReplicationSettings, type SessionTimeout } from '../node/inspectNode.js';
import { leafName, slotOfLeafName } from '../node/leafName.js';
import { leafRowCount } from '../node/leafRowCount.js';
import { connectNode } from '../plumbing/connectNode.js';
import { replicaIdentityReport, type ReplicaIdentityReport } from '../node/replicaIdentity.js';
import {
  dropPublication, dropReplicationSlot, dropSubscription, migrationIdOfReplicationName, reshardReplicationObjects,
} from '../node/replication.js';
import { attachedSlots, dropStagedSlotLeaf, standaloneLeaves } from '../node/slotPartitions.js';
import { onlineSettingProblems, type SettingProblem } from './onlinePreflight.js';
import { replicationCapacity } from '../coordinator/replicationCapacity.js';
import { capacityFinding } from './capacityFinding.js';
import { CATALOG_SUBJECT, DOCTOR_CHECKS, type DoctorCheck, type DoctorFinding, type FindingSeverity } from './doctorFinding.js';
import { listReferenceTables, type ReferenceTableRecord } from '../catalog/referenceTables.js';
import { isReferenceReplicationName, referenceSlotsHere, referenceSubscriptionName } from '../node/referenceTable.js';
import { checkReferenceCopies } from './referenceCopyCheck.js';
import { syncReferenceCopies } from './referenceTables.js';

export { CATALOG_SUBJECT, DOCTOR_CHECKS, type DoctorCheck, type DoctorFinding, type FindingSeverity } from './doctorFinding.js';

export interface DoctorReport {
  findings: DoctorFinding[];
  /** Error findings that remain (not fixed): the command fails when there are any. */
  errors: number;
  warnings: number;
  fixed: number;
}

export interface DoctorOptions {
  /** Remove orphans: subscriptions, replication slots, publications, fence and change-recording triggers, staged leaves. Never ownership. */
  fix: boolean;
}

/** Repairs run in this order across all nodes: a subscription before the slot it streams from, a fence before its leaf. */
const REPAIR_ORDER: readonly DoctorCheck[] = ['orphan_subscription', 'orphan_replication_slot', 'orphan_publication', 'fence_trigger', 'change_trigger', 'staged_leaf', 'reference_copy'];

interface Repair {
  /** Does the repair; returns the line that reports it. */
  run(): Promise<string>;
}

interface PendingFinding extends DoctorFinding {
  repair?: Repair;
}

/** A timeout shorter than this can end one of a move's statements or transactions midway. */
const TIMEOUT_MS_MIN: Record<SessionTimeout['name'], { ms: number; why: string }> = {
  statement_timeout: { ms: 60 * 60_000, why: "a slot's COPY and a DETACH … CONCURRENTLY each run as one statement" },
  idle_in_transaction_session_timeout: { ms: 10 * 60_000, why: 'the initial copy holds snapshot transactions open, idle between leaves, for a whole batch' },
  lock_timeout: { ms: 60_000, why: "ATTACH and DETACH wait for the parent's lock behind long transactions" },
};

const SETTING_SOURCE: Record<string, string> = {
  'configuration file': 'in the server configuration',
  database: 'for the database (ALTER DATABASE)',
  user: 'for the role (ALTER ROLE)',
  'database user': 'for the role in this database (ALTER ROLE … IN DATABASE)',
};

/** What one node holds that doctor judges; read once, judged without further queries. */
interface NodeInspection {
  node: NodeRecord;
  client: pg.Client;
  /** Which database the node's URL reaches now; undefined when the server would not say (`identityUnreadable` says why). */
  identity: DatabaseIdentity | undefined;
  identityUnreadable: string | undefined;
  settings: ReplicationSettings;
  timeouts: SessionTimeout[];
  replication: { publications: string[]; subscriptions: string[]; slots: string[] };
  tables: Map<string, TableOnNode>;
}

interface TableOnNode {
  identity: ReplicaIdentityReport;
  /** slot → leaf name. */
  attached: Map<number, string>;
  standalone: string[];
  fenced: { leaf: string; attached: boolean }[];
  /** Leaves with a move's or a split's change-recording triggers. */
  recording: { leaf: string; triggers: string[] }[];
}

function finding(node: string, check: DoctorCheck, severity: FindingSeverity, message: string, fix?: string, repair?: Repair): PendingFinding {
  return { severity, node, check, message, fix, fixed: false, ...(repair ? { repair } : {}) };
}

/**
 * Preflight and drift checks for the catalog and every node: settings online
 * moves need, timeouts that would end a move, replica identity, reshard's
 * leftovers (publications, subscriptions, replication slots, staged leaves,
 * fence triggers), nodes that are one database under two names (or reach
 * another database than recorded), and drift between the slot map and the
 * attached partitions. One finding per problem with its fix; with `fix`, leftovers
 * that no migration in flight owns are removed. Ownership is never changed;
 * the identity of a node recorded before identities were kept is recorded.
 */
export async function runDoctor(access: ClusterAccess, options: DoctorOptions): Promise<DoctorReport> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const nodes = await listNodes(catalog);
    const tables = await listShardedTables(catalog);
    const slotMap = await readSlotMap(catalog);
    const findings: PendingFinding[] = [];
    const inspections: NodeInspection[] = [];
    try {
      await Promise.all(nodes.map(async (node) => {
        const inspected = await inspectNodeForDoctor(node, access, tables);
        if ('client' in inspected) inspections.push(inspected);
        else findings.push(inspected.finding);
      }));
      inspections.sort((a, b) => a.node.name.localeCompare(b.node.name));
      // Read after the nodes: any migration that made an object seen there was recorded before it.
      const inFlight = await migrationsInFlight(catalog);
      const held = new Map<number, boolean>();
      for (const migration of inFlight) held.set(migration.id, await migrationIsHeld(catalog, migration.id));
      const protectedSlots = new Map<number, number>();
      for (const migration of inFlight) for (const slot of migration.slots) protectedSlots.set(slot, migration.id);

      const identities = await identityFindings(catalog, inspections, slotMap);
      findings.push(...identities.findings);
      const leafRows = await countMisplacedLeaves(inspections, tables, slotMap, protectedSlots);
      const copies: CopyRule = { inspections, leafRows, identityTrouble: identities.trouble };
      findings.push(...catalogFindings(slotMap, inFlight, held));
      findings.push(...timeoutFindings(CATALOG_SUBJECT, access.catalog, await readSessionTimeouts(catalog)));
      const primaryKeys = knownPrimaryKeys(inspections);
      for (const inspection of inspections) {
        findings.push(...settingFindings(inspection));
        findings.push(...timeoutFindings(inspection.node.name, inspection.node.connection, inspection.timeouts));
        findings.push(await capacityFinding(inspection.node, inspection.client));
        findings.push(...tableFindings(inspection, tables, primaryKeys));
        findings.push(...replicationObjectFindings(inspection, new Set(inFlight.map((migration) => migration.id))));
        findings.push(...leftoverLeafFindings(inspection, tables, slotMap, protectedSlots, copies));
      }
      findings.push(...driftFindings(inspections, tables, slotMap, protectedSlots, copies));
      const referenceTables = await listReferenceTables(catalog);
      findings.push(...await referenceFindings(access, nodes, referenceTables));
      for (const inspection of inspections) findings.push(...strayReferenceSlotFindings(inspection, await referenceSlotsHere(inspection.client), nodes, referenceTables));
      if (options.fix) await repairAll(findings);
    } finally {
      await Promise.all(inspections.map((inspection) => inspection.client.end().catch(() => {})));
    }
    return report(findings);
  });
}

async function inspectNodeForDoctor(node: NodeRecord, access: ClusterAccess, tables: readonly ShardedTableRecord[]): Promise<NodeInspection | { finding: PendingFinding }> {
  let client: pg.Client;
  try {
    client = await connectNode(node, access.passwords, 'reshard doctor');
  } catch (error) {
    if (!(error instanceof ReshardError)) throw error;
    return { finding: finding(node.name, 'reachable', 'error', error.message, `${error.fix}; every other check of this node was skipped`) };
  }
  try {
    const perTable = new Map<string, TableOnNode>();
    for (const table of tables) {
      perTable.set(describeTable(table), {
        identity: await replicaIdentityReport(client, table),
        attached: await attachedSlots(client, table),
        standalone: await standaloneLeaves(client, table),
        fenced: await fencedLeaves(client, table),
        recording: await changeRecordingLeaves(client, table),
      });
    }
    let identity: DatabaseIdentity | undefined;
    let identityUnreadable: string | undefined;
    try {
      identity = await readDatabaseIdentity(client, `node "${node.name}"`);
    } catch (error) {
      if (!(error instanceof ReshardError)) throw error;
      identityUnreadable = error.line();
    }
    return {
      node,
      client,
      identity,
      identityUnreadable,
      settings: await readReplicationSettings(client),
      timeouts: await readSessionTimeouts(client),
      replication: await reshardReplicationObjects(client),
      tables: perTable,
    };
  } catch (error) {
    await client.end().catch(() => {});
    const reason = error instanceof Error ? error.message : String(error);
    return { finding: finding(node.name, 'reachable', 'error', `node "${node.name}" could not be inspected (${reason})`,
      'connect reshard as a superuser (it reads pg_catalog, pg_settings and pg_replication_slots); every other check of this node was skipped') };
  }
}

function catalogFindings(slotMap: SlotMapWithStates, inFlight: readonly MigrationInFlight[], held: ReadonlyMap<number, boolean>): PendingFinding[] {
  const findings: PendingFinding[] = [
    finding(CATALOG_SUBJECT, 'catalog', 'ok', `schema current, ${slotMap.modulus} slots, epoch ${slotMap.epoch}`),
  ];
  for (const migration of inFlight) {
    if (held.get(migration.id)) {
      findings.push(finding(CATALOG_SUBJECT, 'migration', 'ok', `migration ${migration.id} (${migration.state}) is held by a coordinator; its ${migration.slots.length} slots are left alone`));
    } else if (migration.state === 'running') {
      findings.push(finding(CATALOG_SUBJECT, 'migration', 'warning', `migration ${migration.id} was interrupted; its ${migration.slots.length} slots' objects are kept for it`,
        'run `reshard resume` to finish it, or `reshard rollback` to undo it'));
    } else {
      findings.push(finding(CATALOG_SUBJECT, 'migration', 'warning', `migration ${migration.id} failed with moves half-done; its ${migration.slots.length} slots' objects are kept for it`,
        'run `reshard resume` to finish them, or `reshard rollback` to undo them'));
    }
  }
  if (inFlight.length === 0) findings.push(finding(CATALOG_SUBJECT, 'migration', 'ok', 'no migration in flight'));
  const frozen = slotMap.states.flatMap((state, slot) => (state === 'frozen' ? [slot] : []));
  const movingSlots = new Set(inFlight.filter((migration) => held.get(migration.id)).flatMap((migration) => migration.slots));
  for (const slot of frozen) {
    if (movingSlots.has(slot)) continue;
    findings.push(finding(CATALOG_SUBJECT, 'frozen_slot', 'error', `slot ${slot} is frozen but no coordinator is moving it: routers hold its calls until they time out`,
      inFlight.length > 0 ? 'run `reshard resume` (or `reshard rollback`): the move finishes or unfreezes it' : 'no migration can unfreeze it; report this as a bug with `reshard status --json`'));
  }
  if (frozen.every((slot) => movingSlots.has(slot))) findings.push(finding(CATALOG_SUBJECT, 'frozen_slot', 'ok', frozen.length ? `${frozen.length} slots frozen by a running coordinator` : 'no slot is frozen'));
  return findings;
}

function settingFindings(inspection: NodeInspection): PendingFinding[] {
  const { node, settings } = inspection;
  // Sized as preflight sizes a plan: --concurrency batches at once into the node and out of it.
  const problems = onlineSettingProblems(node.name, settings, { subscriptionsWanted: node.concurrencyMax, publicationsWanted: node.concurrencyMax, concurrencyMax: node.concurrencyMax });
  const findings: PendingFinding[] = problems.map((problem) => finding(node.name, problem.check, problem.severity, problem.message, problem.fix));
  const capacity = replicationCapacity(settings, node.concurrencyMax);
  const okMessages: Record<SettingProblem['check'], string> = {
    wal_level: `wal_level=${settings.walLevel}`,
    privileges: settings.superuser ? 'superuser' : 'pg_create_subscription and REPLICATION',
    replication_slots: `max_replication_slots=${settings.maxReplicationSlots} (${settings.replicationSlotsUsed} used), max_wal_senders=${settings.maxWalSenders} (${settings.walSendersUsed} used): feeds ${capacity.publicationsMax} online batches at once`,
    logical_workers: `max_logical_replication_workers=${settings.maxLogicalReplicationWorkers} (${settings.logicalWorkersUsed} used), max_worker_processes=${settings.maxWorkerProcesses} (${settings.backgroundWorkersUsed} used): takes ${capacity.subscriptionsMax} online batches at once`,
    wal_retrieve_retry_interval: `wal_retrieve_retry_interval=${settings.walRetrieveRetryIntervalMs} ms`,
  };
  for (const [check, message] of Object.entries(okMessages) as [SettingProblem['check'], string][]) {
    if (!problems.some((problem) => problem.check === check)) findings.push(finding(node.name, check, 'ok', message));
  }
  return findings;
}

function formatMs(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}min` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function timeoutFindings(subject: string, connection: { user: string; database: string }, timeouts: readonly SessionTimeout[]): PendingFinding[] {
  const findings: PendingFinding[] = [];
  for (const timeout of timeouts) {
    const limit = TIMEOUT_MS_MIN[timeout.name];
    if (timeout.valueMs === 0 || timeout.valueMs >= limit.ms) continue;
    const where = SETTING_SOURCE[timeout.source] ?? `by ${timeout.source}`;
    findings.push(finding(subject, 'timeouts', 'warning',
      `${timeout.name}=${formatMs(timeout.valueMs)}, set ${where}, can end a move midway: ${limit.why}`,
      `ALTER ROLE ${quoteIdent(connection.user)} IN DATABASE ${quoteIdent(connection.database)} SET ${timeout.name} = 0 (new sessions; or run reshard as a role of its own with that setting)`));
  }
  if (findings.length === 0) findings.push(finding(subject, 'timeouts', 'ok', 'no statement, lock or idle-in-transaction timeout short enough to end a move'));
  return findings;
}

/** Each table's primary key as some node has it: the fix for a node that lost it. */
function knownPrimaryKeys(inspections: readonly NodeInspection[]): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const inspection of inspections) {
    for (const [table, onNode] of inspection.tables) if (onNode.identity.primaryKey.length > 0 && !keys.has(table)) keys.set(table, onNode.identity.primaryKey);
  }
  return keys;
}

function listSome(names: readonly string[], shownMax = 3): string {
  return names.length <= shownMax ? names.join(', ') : `${names.slice(0, shownMax).join(', ')} and ${names.length - shownMax} more`;
}

function tableFindings(inspection: NodeInspection, tables: readonly ShardedTableRecord[], primaryKeys: ReadonlyMap<string, string[]>): PendingFinding[] {
  const name = inspection.node.name;
  const findings: PendingFinding[] = [];
  for (const table of tables) {
    const key = describeTable(table);
    const { identity } = inspection.tables.get(key)!;
    const parent = quoteQualified(table.schema, table.name);
    if (!identity.parentExists) {
      findings.push(finding(name, 'parent_table', 'error', `sharded table ${key} does not exist on this node`,
        `create it as the catalog defines it: CREATE TABLE ${parent} (${table.definition}) PARTITION BY HASH (${table.shardKey.map(quoteIdent).join(', ')})`));
      continue;
    }
    if (!identity.parentHasIdentity) {
      const columns = primaryKeys.get(key) ?? table.shardKey;
      findings.push(finding(name, 'replica_identity', 'error',
        `${key} has no primary key or replica identity here, so online moves cannot replicate its UPDATEs and DELETEs`,
        `ALTER TABLE ${parent} ADD PRIMARY KEY (${columns.map(quoteIdent).join(', ')})${primaryKeys.has(key) ? ' (as on the other nodes)' : ' (it must include the shard key)'}`));
    } else if (identity.leavesWithoutIdentity.length > 0) {
      findings.push(finding(name, 'replica_identity', 'error',
        `${identity.leavesWithoutIdentity.length} leaves of ${key} have no replica identity (${listSome(identity.leavesWithoutIdentity)})`,
        `ALTER TABLE ${quoteQualified(table.schema, identity.leavesWithoutIdentity[0]!)} REPLICA IDENTITY DEFAULT, and the same for each`));
    }
  }
  if (!findings.some((entry) => entry.check === 'replica_identity')) {
    findings.push(finding(name, 'replica_identity', 'ok', tables.length ? `${tables.map(describeTable).join(', ')}: primary key on the parent and every leaf` : 'no sharded tables'));
  }
  if (!findings.some((entry) => entry.check === 'parent_table')) findings.push(finding(name, 'parent_table', 'ok', `all ${tables.length} sharded tables exist`));
  return findings;
}

/** Every reference copy's subscription: present, enabled, not stopped on an error, synced (no table scans: `verify` compares rows). */
async function referenceFindings(access: ClusterAccess, nodes: readonly NodeRecord[], referenceTables: readonly ReferenceTableRecord[]): Promise<PendingFinding[]> {
  if (referenceTables.length === 0) return [];
  const report = await checkReferenceCopies(access, nodes, referenceTables, { compareRows: false });
  if (report.problems.length === 0) {
    return [finding(CATALOG_SUBJECT, 'reference_copy', 'ok', `${referenceTables.length} reference table(s): every copy subscribed, enabled and in sync`)];
  }
  // A missing copy or subscription, or one still syncing, is what `node add` does: --fix does it again for that node.
  const resyncable = new Set(['missing_table', 'missing_subscription', 'not_synced']);
  return report.problems.map((problem) => {
    const node = nodes.find((candidate) => candidate.name === problem.node);
    const table = referenceTables.find((candidate) => describeTable(candidate) === problem.table);
    const repair = node && table && resyncable.has(problem.kind)
      ? { run: async () => { await syncReferenceCopies(access, nodes, [table], [node]); return `${problem.table} on ${problem.node}: copied and subscribed to ${table.holder}, in sync`; } }
      : undefined;
    return finding(problem.node, 'reference_copy', 'error', problem.message, resyncable.has(problem.kind) ? `reshard doctor --fix, or ${problem.fix}` : problem.fix, repair);
  });
}

/** Reference replication slots on a node that no member's subscription streams from (left by a node removed while unreachable). */
function strayReferenceSlotFindings(inspection: NodeInspection, slotsHere: readonly string[], nodes: readonly NodeRecord[], referenceTables: readonly ReferenceTableRecord[]): PendingFinding[] {
  const { node, client } = inspection;
  const holds = referenceTables.some((table) => table.holder === node.name);
  const expected = new Set(holds ? nodes.filter((member) => member.state !== 'removed' && member.name !== node.name).map((member) => referenceSubscriptionName(node.name, member.name)) : []);
  return slotsHere.filter((name) => !expected.has(name)).map((name) => finding(node.name, 'reference_copy', 'error',
    `replication slot ${name} serves no member's reference copy and pins WAL until the disk is full`,
    `reshard doctor --fix, or on ${node.name}: SELECT pg_drop_replication_slot(${quoteLiteral(name)})`,
    { run: async () => { await dropReplicationSlot(client, name); return `dropped replication slot ${name}`; } }));
}

function orphanReason(name: string): string {
  const migrationId = migrationIdOfReplicationName(name);
  return migrationId === undefined ? 'made by no migration' : `migration ${migrationId} is not running`;
}

function replicationObjectFindings(inspection: NodeInspection, migrationsKept: ReadonlySet<number>): PendingFinding[] {
  const { node, client, replication } = inspection;
  const orphan = (objectName: string): boolean => {
    // A reference table's publication, subscriptions and slots live as long as the table: owned, checked as reference_copy.
    if (isReferenceReplicationName(objectName)) return false;
    const migrationId = migrationIdOfReplicationName(objectName);
    return migrationId === undefined || !migrationsKept.has(migrationId);
  };
  const findings: PendingFinding[] = [];
  for (const name of replication.subscriptions.filter(orphan)) {
    findings.push(finding(node.name, 'orphan_subscription', 'error',
      `orphaned subscription ${name} (${orphanReason(name)}) keeps a replication slot busy on its source`,
      `reshard doctor --fix, or on ${node.name}: DROP SUBSCRIPTION ${quoteIdent(name)}`,
      { run: async () => { await dropSubscription(client, name); return `dropped subscription ${name} (and its replication slot on the source)`; } }));
  }
  for (const name of replication.slots.filter(orphan)) {
    findings.push(finding(node.name, 'orphan_replication_slot', 'error',
      `orphaned replication slot ${name} (${orphanReason(name)}) pins WAL until the disk is full`,
      `reshard doctor --fix, or on ${node.name}: SELECT pg_drop_replication_slot(${quoteLiteral(name)})`,
      { run: async () => { await dropReplicationSlot(client, name); return `dropped replication slot ${name}`; } }));
  }
  for (const name of replication.publications.filter(orphan)) {
    findings.push(finding(node.name, 'orphan_publication', 'warning', `orphaned publication ${name} (${orphanReason(name)})`,
      `reshard doctor --fix, or on ${node.name}: DROP PUBLICATION ${quoteIdent(name)}`,
      { run: async () => { await dropPublication(client, name); return `dropped publication ${name}`; } }));
  }
  const kinds = ['orphan_subscription', 'orphan_replication_slot', 'orphan_publication'] as const;
  const all = [...replication.subscriptions, ...replication.slots, ...replication.publications];
  const kept = all.filter((name) => !isReferenceReplicationName(name)).length - findings.length;
  for (const check of kinds) {
    if (!findings.some((entry) => entry.check === check)) {
      findings.push(finding(node.name, check, 'ok', check === 'orphan_subscription' && kept > 0 ? `none orphaned (${kept} replication objects belong to a migration in flight)` : 'none'));
    }
  }
  return findings;
}

/** Fence triggers, change-recording triggers and staged leaves that no migration in flight accounts for. */
function leftoverLeafFindings(
  inspection: NodeInspection,
  tables: readonly ShardedTableRecord[],
  slotMap: SlotMapWithStates,
  protectedSlots: ReadonlyMap<number, number>,
  copies: CopyRule,
): PendingFinding[] {
  const { node, client } = inspection;
  const findings: PendingFinding[] = [];
  for (const table of tables) {
    const onNode = inspection.tables.get(describeTable(table))!;
    for (const fenced of onNode.fenced) {
      const slot = slotOfLeafName(table.name, fenced.leaf, slotMap.modulus);
      if (slot !== undefined && protectedSlots.has(slot)) continue;
      const leaf = quoteQualified(table.schema, fenced.leaf);
      findings.push(finding(node.name, 'fence_trigger', 'error',
        `${fenced.leaf} is still fenced: every write to it fails with RSM01`,
        `reshard doctor --fix, or on ${node.name}: DROP TRIGGER reshard_fence ON ${leaf}; DROP TRIGGER reshard_fence_truncate ON ${leaf}`,
        slot === undefined ? undefined : { run: async () => { await unfenceSlot(client, [table], slot, slotMap.modulus); return `removed the fence triggers of ${fenced.leaf}`; } }));
    }
    for (const recording of onNode.recording) {
      const slot = slotOfLeafName(table.name, recording.leaf, slotMap.modulus);
      // A leaf whose slot cannot be told (a split's retired or staged leaf) is left to a finished migration.
      if (slot === undefined ? protectedSlots.size > 0 : protectedSlots.has(slot)) continue;
      const leaf = quoteQualified(table.schema, recording.leaf);
      findings.push(finding(node.name, 'change_trigger', 'warning',
        `${recording.leaf} still records its changes for a move or a split that is over (${recording.triggers.join(', ')}): every write to it pays for them`,
        `reshard doctor --fix, or on ${node.name}: ${recording.triggers.map((trigger) => `DROP TRIGGER ${trigger} ON ${leaf}`).join('; ')}`,
        { run: async () => { await endChangeRecording(client, table, recording.leaf); return `removed the change-recording triggers of ${recording.leaf}`; } }));
    }
    for (const staged of onNode.standalone) {
      const slot = slotOfLeafName(table.name, staged, slotMap.modulus);
      // Not a name reshard gives, a leaf of a move in flight, or the owner's own detached leaf (drift, below).
      // (A leaf of an id no slot has is a split's staged child: verify reports it once no split runs.)
      if (slot === undefined || protectedSlots.has(slot) || slotMap.owners[slot] === node.name || slotMap.owners[slot] === undefined) continue;
      const owner = slotMap.owners[slot]!;
      const copy = otherCopy(copies, inspection, owner, table, slot, staged);
      if (copy.safe) {
        findings.push(finding(node.name, 'staged_leaf', 'warning',
          `${staged} is a staged leaf of slot ${slot} left by a move that did not finish (the owner ${owner} has the slot attached, with at least as many rows)`,
          `reshard doctor --fix, or on ${node.name}: DROP TABLE ${quoteQualified(table.schema, staged)}`,
          { run: async () => { await dropStagedSlotLeaf(client, table, slot, slotMap.modulus); return `dropped staged leaf ${staged}`; } }));
      } else {
        // Without another database's full copy this table may hold the slot's only rows: never dropped, never suggested.
        findings.push(finding(node.name, 'staged_leaf', 'error',
          `${staged} is an unattached leaf of slot ${slot}, and ${copy.why}: it may hold the slot's only rows`,
          `keep it: compare \`reshard slot ${slot} --node ${node.name}\` with \`reshard slot ${slot}\`, and copy the rows ${owner} lacks into its leaf (or give the slot to ${node.name} and ATTACH this leaf) before dropping anything; doctor leaves it alone`));
      }
    }
  }
  if (!findings.some((entry) => entry.check === 'fence_trigger')) findings.push(finding(node.name, 'fence_trigger', 'ok', 'no leftover fence'));
  if (!findings.some((entry) => entry.check === 'change_trigger')) findings.push(finding(node.name, 'change_trigger', 'ok', 'no leftover change recording'));
  if (!findings.some((entry) => entry.check === 'staged_leaf')) findings.push(finding(node.name, 'staged_leaf', 'ok', 'no leftover staged leaf'));
  return findings;
}

/**
 * Invariant 2 against what the nodes hold: a node has a slot's leaf attached
 * iff the slot map says it owns the slot (slots of a migration in flight
 * excepted: there the journal is authoritative). Reported, never repaired:
 * which side holds the right rows is the operator's call.
 */
function driftFindings(
  inspections: readonly NodeInspection[],
  tables: readonly ShardedTableRecord[],
  slotMap: SlotMapWithStates,
  protectedSlots: ReadonlyMap<number, number>,
  copies: CopyRule,
): PendingFinding[] {
  const findings: PendingFinding[] = [];
  const { modulus } = slotMap;
  for (const inspection of inspections) {
    const name = inspection.node.name;
    const trouble = copies.identityTrouble.get(name);
    if (trouble !== undefined) {
      // Under a second name, or at another database than recorded, every leaf looks out of place; any DETACH or DROP could take the only copy.
      findings.push(finding(name, 'slot_map_drift', 'error', `not judged: this node ${trouble}`,
        'settle which database this node is first (see its duplicate_database or database_identity finding); meanwhile DETACH or DROP nothing on it'));
      continue;
    }
    const before = findings.length;
    for (const table of tables) {
      const key = describeTable(table);
      const onNode = inspection.tables.get(key)!;
      if (!onNode.identity.parentExists) continue;
      const parent = quoteQualified(table.schema, table.name);
      const holders = (slot: number): string[] => inspections.filter((other) => other.tables.get(key)?.attached.has(slot)).map((other) => other.node.name);
      for (const slot of slotIds(slotMap)) {
        if (protectedSlots.has(slot)) continue;
        const owner = slotMap.owners[slot]!;
        const boundModulus = slotModulus(slotMap, slot);
        const leaf = leafName(table.name, slot, modulus);
        const qualifiedLeaf = quoteQualified(table.schema, leaf);
        const attachedHere = onNode.attached.has(slot);
        if (attachedHere && owner !== name) {
          const attachedLeaf = onNode.attached.get(slot)!;
          const copy = otherCopy(copies, inspection, owner, table, slot, attachedLeaf);
          findings.push(finding(name, 'slot_map_drift', 'error',
            `${key} slot ${slot} (${attachedLeaf}) is attached here, but the slot map gives it to ${owner}`,
            copy.safe
              ? `compare \`reshard slot ${slot} --node ${name}\` with \`reshard slot ${slot}\`; if its rows here are not needed, on ${name}: ALTER TABLE ${parent} DETACH PARTITION ${qualifiedLeaf} CONCURRENTLY, then DROP TABLE ${qualifiedLeaf}`
              : `${copy.why}, so its rows may live only here: keep it — compare \`reshard slot ${slot} --node ${name}\` with \`reshard slot ${slot}\`, and copy the rows ${owner} lacks into its leaf (or give the slot to ${name}) before dropping anything; doctor never changes ownership`));
        } else if (!attachedHere && owner === name) {
          const elsewhere = holders(slot);
          findings.push(finding(name, 'slot_map_drift', 'error',
            `${key} slot ${slot} is owned by this node but not attached here${elsewhere.length ? ` (it is attached on ${elsewhere.join(', ')})` : ''}`,
            onNode.standalone.includes(leaf)
              ? `on ${name}: ALTER TABLE ${parent} ATTACH PARTITION ${qualifiedLeaf} FOR VALUES WITH (MODULUS ${boundModulus}, REMAINDER ${slot})`
              : elsewhere.length
                ? `the rows are on ${elsewhere.join(', ')}: inspect \`reshard slot ${slot} --node ${elsewhere[0]}\`; doctor never changes ownership`
                : `the leaf is missing: on ${name}: CREATE TABLE ${qualifiedLeaf} PARTITION OF ${parent} FOR VALUES WITH (MODULUS ${boundModulus}, REMAINDER ${slot}) (its rows are lost unless a backup has them)`));
        }
      }
      for (const [slot, attachedLeaf] of onNode.attached) {
        if (hasSlot(slotMap, slot) || protectedSlots.has(slot)) continue;
        findings.push(finding(name, 'slot_map_drift', 'error', `${key}: ${attachedLeaf} (remainder ${slot}) is attached here, but the slot map has no slot ${slot}`,
          'a split or a merge did not finish: run the same `reshard split`/`reshard merge` again to resume it, or `reshard rollback`'));
      }
    }
    if (findings.length === before) {
      const owned = slotMap.owners.filter((owner) => owner === name).length;
      findings.push(finding(name, 'slot_map_drift', 'ok', `its ${owned} owned slots are attached for all ${tables.length} tables, and no other`));
    }
  }
  return findings;
}

/**
 * Invariant 7 read live: two nodes whose URLs reach one database (a DNS
 * alias, an IP and a host name), and nodes whose URL now reaches another
 * database than the one recorded. Nodes recorded before identities were kept
 * get theirs recorded here. Returns the nodes whose leaves must not be
 * judged (or dropped) until the operator settles which database they are.
 */
async function identityFindings(
  catalog: pg.ClientBase,
  inspections: readonly NodeInspection[],
  slotMap: SlotMapWithStates,
): Promise<{ findings: PendingFinding[]; trouble: Map<string, string> }> {
  const findings: PendingFinding[] = [];
  const trouble = new Map<string, string>();
  const namesByDatabase = new Map<string, string[]>();
  for (const inspection of inspections) {
    if (!inspection.identity) continue;
    const key = databaseIdentityKey(inspection.identity);
    namesByDatabase.set(key, [...(namesByDatabase.get(key) ?? []), inspection.node.name]);
  }
  for (const inspection of inspections) {
    const { node, identity } = inspection;
    if (!identity) {
      trouble.set(node.name, 'would not say which database it is');
      findings.push(finding(node.name, 'database_identity', 'warning', `which database this node is could not be read: ${inspection.identityUnreadable ?? 'unknown'}`,
        'GRANT EXECUTE ON FUNCTION pg_control_system() TO the reshard role; until then doctor drops none of its leaves'));
      continue;
    }
    const aliases = namesByDatabase.get(databaseIdentityKey(identity))!.filter((name) => name !== node.name);
    if (aliases.length > 0) {
      trouble.set(node.name, `is the same database as ${aliases.join(', ')}`);
      findings.push(finding(node.name, 'duplicate_database', 'error',
        `node "${node.name}" is the same database as node ${aliases.map((name) => `"${name}"`).join(', ')} (${describeDatabaseIdentity(identity)}): every leaf here is theirs too, and a move between them would drop the only copy`,
        duplicateDatabaseFix(inspection, aliases, slotMap, inspections)));
    } else {
      findings.push(finding(node.name, 'duplicate_database', 'ok', 'no other node reaches this database'));
    }
    if (node.identity && !sameDatabase(node.identity, identity)) {
      trouble.set(node.name, trouble.get(node.name) ?? 'reaches another database than the one recorded for it');
      findings.push(finding(node.name, 'database_identity', 'error',
        `node "${node.name}" now reaches another database (${describeDatabaseIdentity(identity)}) than the one recorded for it (${describeDatabaseIdentity(node.identity)})`,
        `point "${node.name}"'s host and port back at its own database (check DNS and addresses); no move runs to or from it meanwhile`));
    } else if (!node.identity && aliases.length === 0) {
      try {
        await recordNodeIdentity(catalog, node.name, identity);
        findings.push(finding(node.name, 'database_identity', 'ok', `${describeDatabaseIdentity(identity)} (recorded now)`));
      } catch (error) {
        if (!(error instanceof ReshardError)) throw error;
        // Another node, not inspected now (unreachable), is recorded as this database.
        trouble.set(node.name, 'is recorded as another node\'s database');
        findings.push(finding(node.name, 'duplicate_database', 'error', error.message, error.fix));
      }
    } else {
      findings.push(finding(node.name, 'database_identity', 'ok', describeDatabaseIdentity(identity)));
    }
  }
  return { findings, trouble };
}

/**
 * Which name to keep for one database, and how to retire the others without
 * moving data. A name whose URL reaches another database than recorded is
 * the one that is wrong (a DNS or address change): its slots' rows are on
 * its own database, so it is pointed back, never merged. Otherwise the name
 * that owns the most slots stays, and an alias's slots are handed to it in
 * the catalog only if this database has every one of them attached.
 */
function duplicateDatabaseFix(inspection: NodeInspection, aliases: readonly string[], slotMap: SlotMapWithStates, inspections: readonly NodeInspection[]): string {
  const never = 'never DETACH, DROP or move a leaf between these names: there is one copy';
  const names = [inspection.node.name, ...aliases];
  const moved = names.filter((name) => {
    const other = inspections.find((candidate) => candidate.node.name === name);
    return other?.node.identity !== undefined && other.identity !== undefined && !sameDatabase(other.node.identity, other.identity);
  });
  if (moved.length > 0) {
    return `${moved.map((name) => `"${name}"`).join(', ')} now reaches another database than the one recorded for it: point its host and port back at its own database (check DNS and addresses), then run doctor again; ${never}`;
  }
  const slotsOf = (name: string): number[] => slotMap.owners.flatMap((owner, slot) => (owner === name ? [slot] : []));
  const keep = [...names].sort((a, b) => slotsOf(b).length - slotsOf(a).length || a.localeCompare(b))[0]!;
  const retire = names.filter((name) => name !== keep);
  const owning = retire.filter((name) => slotsOf(name).length > 0);
  if (owning.length === 0) {
    return `keep "${keep}" (it owns ${slotsOf(keep).length} slots) and retire the alias: ${retire.map((alias) => `\`reshard node remove ${alias}\``).join(', ')} (it owns none); ${never}`;
  }
  const allHere = owning.every((name) => slotsOf(name).every((slot) => [...inspection.tables.values()].every((table) => !table.identity.parentExists || table.attached.has(slot))));
  if (!allHere) {
    return `${owning.map((name) => `"${name}"`).join(', ')} owns slots that this database does not hold, so their rows are elsewhere: find the database it was meant to reach and point it there; ${never}`;
  }
  return `keep "${keep}": the slots of ${owning.map((alias) => `"${alias}"`).join(', ')} are all attached in this database, so give them to "${keep}" in the catalog without moving data `
    + `(UPDATE reshard.slot SET owner = '${keep}' WHERE owner IN (${owning.map((alias) => `'${alias}'`).join(', ')}); UPDATE reshard.cluster SET epoch = epoch + 1), then \`reshard node remove\` each alias; ${never}`;
}

/** What decides whether doctor may let a leaf go: the nodes as inspected, the misplaced leaves' row counts, the nodes whose database is in doubt. */
interface CopyRule {
  inspections: readonly NodeInspection[];
  /** Rows of the leaves found out of place, and of their owners' leaves, by `leafKey`. */
  leafRows: ReadonlyMap<string, number>;
  identityTrouble: ReadonlyMap<string, string>;
}

function leafKey(node: string, schema: string, leaf: string): string {
  return JSON.stringify([node, schema, leaf]);
}

/**
 * A leaf here is not the only copy of its rows when the slot's owner — a
 * different database, not this one under another name — has the slot's
 * leaf attached with at least as many rows. Otherwise says why not.
 */
function otherCopy(rule: CopyRule, here: NodeInspection, owner: string, table: ShardedTableRecord, slot: number, leaf: string): { safe: true } | { safe: false; why: string } {
  const hereTrouble = rule.identityTrouble.get(here.node.name);
  if (hereTrouble !== undefined) return { safe: false, why: `this node ${hereTrouble}` };
  const holder = rule.inspections.find((candidate) => candidate.node.name === owner);
  if (!holder) return { safe: false, why: `its owner ${owner} could not be inspected` };
  if (!holder.identity || !here.identity) return { safe: false, why: `which database ${owner} is could not be read` };
  if (sameDatabase(holder.identity, here.identity)) return { safe: false, why: `its owner ${owner} is this same database under another name` };
  const ownerLeaf = holder.tables.get(describeTable(table))?.attached.get(slot);
  if (ownerLeaf === undefined) return { safe: false, why: `its owner ${owner} does not have the slot attached` };
  const hereRows = rule.leafRows.get(leafKey(here.node.name, table.schema, leaf));
  const ownerRows = rule.leafRows.get(leafKey(owner, table.schema, ownerLeaf));
  if (hereRows === undefined || ownerRows === undefined) return { safe: false, why: `the rows of ${leaf} here or on ${owner} could not be counted` };
  if (ownerRows < hereRows) return { safe: false, why: `its owner ${owner}'s leaf has ${ownerRows} rows and this one ${hereRows}` };
  return { safe: true };
}

/**
 * Counts the rows of every leaf found where the slot map does not put it
 * (attached on a non-owner, or standalone there) and of the owner's leaf of
 * the same slot: only those, since a count scans the leaf.
 */
async function countMisplacedLeaves(
  inspections: readonly NodeInspection[],
  tables: readonly ShardedTableRecord[],
  slotMap: SlotMapWithStates,
  protectedSlots: ReadonlyMap<number, number>,
): Promise<Map<string, number>> {
  const wanted = new Map<string, { inspection: NodeInspection; schema: string; leaf: string }>();
  const want = (inspection: NodeInspection, schema: string, leaf: string): void => {
    wanted.set(leafKey(inspection.node.name, schema, leaf), { inspection, schema, leaf });
  };
  for (const inspection of inspections) {
    for (const table of tables) {
      const key = describeTable(table);
      const onNode = inspection.tables.get(key)!;
      const misplaced: [number, string][] = [
        ...[...onNode.attached].filter(([slot]) => slotMap.owners[slot] !== inspection.node.name),
        ...onNode.standalone.flatMap((leaf): [number, string][] => {
          const slot = slotOfLeafName(table.name, leaf, slotMap.modulus);
          return slot === undefined || slotMap.owners[slot] === inspection.node.name ? [] : [[slot, leaf]];
        }),
      ];
      for (const [slot, leaf] of misplaced) {
        if (protectedSlots.has(slot)) continue;
        want(inspection, table.schema, leaf);
        const owner = inspections.find((candidate) => candidate.node.name === slotMap.owners[slot]);
        const ownerLeaf = owner?.tables.get(key)?.attached.get(slot);
        if (owner && ownerLeaf !== undefined) want(owner, table.schema, ownerLeaf);
      }
    }
  }
  const rows = new Map<string, number>();
  // One session per node runs its counts one after another; nodes count in parallel.
  await Promise.all(inspections.map(async (inspection) => {
    for (const [key, entry] of wanted) {
      if (entry.inspection !== inspection) continue;
      try {
        rows.set(key, await leafRowCount(inspection.client, entry.schema, entry.leaf));
      } catch (error) {
        // Left uncounted: the leaf is then kept, and its finding says its rows could not be counted.
        if (!(error instanceof Error)) throw error;
      }
    }
  }));
  return rows;
}

async function repairAll(findings: PendingFinding[]): Promise<void> {
  for (const check of REPAIR_ORDER) {
    for (const entry of findings) {
      if (entry.check !== check || !entry.repair) continue;
      try {
        entry.message = await entry.repair.run();
        entry.fixed = true;
        entry.fix = undefined;
      } catch (error) {
        const reason = errorText(error);
        entry.message = `${entry.message}; --fix failed: ${reason}`;
      }
    }
  }
}

function report(pending: readonly PendingFinding[]): DoctorReport {
  const subjectRank = (node: string): string => (node === CATALOG_SUBJECT ? '' : `~${node}`);
  const findings = pending
    .map(({ repair: _repair, ...entry }) => entry)
    .sort((a, b) => subjectRank(a.node).localeCompare(subjectRank(b.node)) || DOCTOR_CHECKS.indexOf(a.check) - DOCTOR_CHECKS.indexOf(b.check));
  return {
    findings,
    errors: findings.filter((entry) => entry.severity === 'error' && !entry.fixed).length,
    warnings: findings.filter((entry) => entry.severity === 'warning' && !entry.fixed).length,
    fixed: findings.filter((entry) => entry.fixed).length,
  };
}
