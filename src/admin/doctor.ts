import type pg from 'pg';
import { migrationIsHeld, migrationsInFlight, type MigrationInFlight } from '../catalog/migrations.js';
import { listNodes, type NodeRecord } from '../catalog/nodes.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { readSlotMap, type SlotMapWithStates } from '../catalog/slotMap.js';
import { describeTable, listShardedTables, type ShardedTableRecord } from '../catalog/tables.js';
import { ReshardError } from '../core/errors.js';
import { quoteIdent, quoteLiteral, quoteQualified } from '../core/identifier.js';
import { withCatalog, type ClusterAccess } from '../coordinator/catalogAccess.js';
import { fencedLeaves, unfenceSlot } from '../node/fence.js';
import { readReplicationSettings, readSessionTimeouts, type ReplicationSettings, type SessionTimeout } from '../node/inspectNode.js';
import { leafName, slotOfLeafName } from '../node/leafName.js';
import { connectNode } from '../node/nodeAccess.js';
import { replicaIdentityReport, type ReplicaIdentityReport } from '../node/replicaIdentity.js';
import {
  dropPublication, dropReplicationSlot, dropSubscription, migrationIdOfReplicationName, reshardReplicationObjects,
} from '../node/replication.js';
import { attachedSlots, dropStagedSlotLeaf, standaloneLeaves } from '../node/slotPartitions.js';
import { onlineSettingProblems, type SettingProblem } from './onlinePreflight.js';
import { capacityFinding } from './capacityFinding.js';

export type FindingSeverity = 'error' | 'warning' | 'ok';

/** The checks in the order findings are listed. */
export const DOCTOR_CHECKS = [
  'catalog', 'migration', 'frozen_slot',
  'reachable', 'wal_level', 'privileges', 'replication_slots', 'logical_workers', 'wal_retrieve_retry_interval', 'timeouts', 'capacity',
  'parent_table', 'replica_identity',
  'orphan_subscription', 'orphan_replication_slot', 'orphan_publication', 'fence_trigger', 'staged_leaf',
  'slot_map_drift',
] as const;
export type DoctorCheck = (typeof DOCTOR_CHECKS)[number];

/** Where a finding applies: the catalog, or a node by name. */
export const CATALOG_SUBJECT = 'catalog';

export interface DoctorFinding {
  severity: FindingSeverity;
  node: string;
  check: DoctorCheck;
  message: string;
  /** What the operator runs to fix it; undefined for ok findings. */
  fix: string | undefined;
  /** With --fix: doctor repaired it (the message says what it did). */
  fixed: boolean;
}

export interface DoctorReport {
  findings: DoctorFinding[];
  /** Error findings that remain (not fixed): the command fails when there are any. */
  errors: number;
  warnings: number;
  fixed: number;
}

export interface DoctorOptions {
  /** Remove orphans: subscriptions, replication slots, publications, fence triggers, staged leaves. Never ownership. */
  fix: boolean;
}

/** Repairs run in this order across all nodes: a subscription before the slot it streams from, a fence before its leaf. */
const REPAIR_ORDER: readonly DoctorCheck[] = ['orphan_subscription', 'orphan_replication_slot', 'orphan_publication', 'fence_trigger', 'staged_leaf'];

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
}

function finding(node: string, check: DoctorCheck, severity: FindingSeverity, message: string, fix?: string, repair?: Repair): PendingFinding {
  return { severity, node, check, message, fix, fixed: false, ...(repair ? { repair } : {}) };
}

/**
 * Preflight and drift checks for the catalog and every node: settings online
 * moves need, timeouts that would end a move, replica identity, reshard's
 * leftovers (publications, subscriptions, replication slots, staged leaves,
 * fence triggers) and drift between the slot map and the attached
 * partitions. One finding per problem with its fix; with `fix`, leftovers
 * that no migration in flight owns are removed. Ownership is never changed.
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

      findings.push(...catalogFindings(slotMap, inFlight, held));
      findings.push(...timeoutFindings(CATALOG_SUBJECT, access.catalog, await readSessionTimeouts(catalog)));
      const primaryKeys = knownPrimaryKeys(inspections);
      for (const inspection of inspections) {
        findings.push(...settingFindings(inspection));
        findings.push(...timeoutFindings(inspection.node.name, inspection.node.connection, inspection.timeouts));
        findings.push(await capacityFinding(inspection.node, inspection.client));
        findings.push(...tableFindings(inspection, tables, primaryKeys));
        findings.push(...replicationObjectFindings(inspection, new Set(inFlight.map((migration) => migration.id))));
        findings.push(...leftoverLeafFindings(inspection, tables, slotMap, protectedSlots, inspections));
      }
      findings.push(...driftFindings(inspections, tables, slotMap, protectedSlots));
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
      });
    }
    return {
      node,
      client,
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
  const problems = onlineSettingProblems(node.name, settings, node.concurrencyMax);
  const findings: PendingFinding[] = problems.map((problem) => finding(node.name, problem.check, problem.severity, problem.message, problem.fix));
  const okMessages: Record<SettingProblem['check'], string> = {
    wal_level: `wal_level=${settings.walLevel}`,
    privileges: settings.superuser ? 'superuser' : 'pg_create_subscription and REPLICATION',
    replication_slots: `max_replication_slots=${settings.maxReplicationSlots} (${settings.replicationSlotsUsed} used), max_wal_senders=${settings.maxWalSenders}`,
    logical_workers: `max_logical_replication_workers=${settings.maxLogicalReplicationWorkers}, max_worker_processes=${settings.maxWorkerProcesses}`,
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

function orphanReason(name: string): string {
  const migrationId = migrationIdOfReplicationName(name);
  return migrationId === undefined ? 'made by no migration' : `migration ${migrationId} is not running`;
}

function replicationObjectFindings(inspection: NodeInspection, migrationsKept: ReadonlySet<number>): PendingFinding[] {
  const { node, client, replication } = inspection;
  const orphan = (objectName: string): boolean => {
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
  const kept = replication.subscriptions.length + replication.slots.length + replication.publications.length - findings.length;
  for (const check of kinds) {
    if (!findings.some((entry) => entry.check === check)) {
      findings.push(finding(node.name, check, 'ok', check === 'orphan_subscription' && kept > 0 ? `none orphaned (${kept} replication objects belong to a migration in flight)` : 'none'));
    }
  }
  return findings;
}

/** Fence triggers and staged leaves that no migration in flight accounts for. */
function leftoverLeafFindings(
  inspection: NodeInspection,
  tables: readonly ShardedTableRecord[],
  slotMap: SlotMapWithStates,
  protectedSlots: ReadonlyMap<number, number>,
  inspections: readonly NodeInspection[],
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
    for (const staged of onNode.standalone) {
      const slot = slotOfLeafName(table.name, staged, slotMap.modulus);
      // Not a name reshard gives, a leaf of a move in flight, or the owner's own detached leaf (drift, below).
      if (slot === undefined || protectedSlots.has(slot) || slotMap.owners[slot] === node.name) continue;
      const owner = slotMap.owners[slot]!;
      const ownerInspection = inspections.find((candidate) => candidate.node.name === owner);
      if (ownerInspection?.tables.get(describeTable(table))?.attached.has(slot)) {
        findings.push(finding(node.name, 'staged_leaf', 'warning',
          `${staged} is a staged leaf of slot ${slot} left by a move that did not finish (the owner ${owner} has the slot attached)`,
          `reshard doctor --fix, or on ${node.name}: DROP TABLE ${quoteQualified(table.schema, staged)}`,
          { run: async () => { await dropStagedSlotLeaf(client, table, slot, slotMap.modulus); return `dropped staged leaf ${staged}`; } }));
      } else {
        // Without the owner's copy this table may hold the slot's only rows: never dropped automatically.
        findings.push(finding(node.name, 'staged_leaf', 'error',
          `${staged} is an unattached leaf of slot ${slot}, and its owner ${owner} ${ownerInspection ? 'does not have the slot attached' : 'could not be inspected'}`,
          `compare \`reshard slot ${slot} --node ${node.name}\` with the owner before dropping anything; doctor leaves it alone`));
      }
    }
  }
  if (!findings.some((entry) => entry.check === 'fence_trigger')) findings.push(finding(node.name, 'fence_trigger', 'ok', 'no leftover fence'));
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
): PendingFinding[] {
  const findings: PendingFinding[] = [];
  const { modulus } = slotMap;
  for (const inspection of inspections) {
    const name = inspection.node.name;
    const before = findings.length;
    for (const table of tables) {
      const key = describeTable(table);
      const onNode = inspection.tables.get(key)!;
      if (!onNode.identity.parentExists) continue;
      const parent = quoteQualified(table.schema, table.name);
      const holders = (slot: number): string[] => inspections.filter((other) => other.tables.get(key)?.attached.has(slot)).map((other) => other.node.name);
      for (let slot = 0; slot < modulus; slot++) {
        if (protectedSlots.has(slot)) continue;
        const owner = slotMap.owners[slot]!;
        const leaf = leafName(table.name, slot, modulus);
        const qualifiedLeaf = quoteQualified(table.schema, leaf);
        const attachedHere = onNode.attached.has(slot);
        if (attachedHere && owner !== name) {
          const ownerHasIt = holders(slot).includes(owner);
          findings.push(finding(name, 'slot_map_drift', 'error',
            `${key} slot ${slot} (${onNode.attached.get(slot)}) is attached here, but the slot map gives it to ${owner}`,
            ownerHasIt
              ? `compare \`reshard slot ${slot} --node ${name}\` with \`reshard slot ${slot}\`; if its rows here are not needed, on ${name}: ALTER TABLE ${parent} DETACH PARTITION ${qualifiedLeaf} CONCURRENTLY, then DROP TABLE ${qualifiedLeaf}`
              : `${owner} does not have it attached, so its rows may live only here: inspect \`reshard slot ${slot} --node ${name}\`; doctor never changes ownership`));
        } else if (!attachedHere && owner === name) {
          const elsewhere = holders(slot);
          findings.push(finding(name, 'slot_map_drift', 'error',
            `${key} slot ${slot} is owned by this node but not attached here${elsewhere.length ? ` (it is attached on ${elsewhere.join(', ')})` : ''}`,
            onNode.standalone.includes(leaf)
              ? `on ${name}: ALTER TABLE ${parent} ATTACH PARTITION ${qualifiedLeaf} FOR VALUES WITH (MODULUS ${modulus}, REMAINDER ${slot})`
              : elsewhere.length
                ? `the rows are on ${elsewhere.join(', ')}: inspect \`reshard slot ${slot} --node ${elsewhere[0]}\`; doctor never changes ownership`
                : `the leaf is missing: on ${name}: CREATE TABLE ${qualifiedLeaf} PARTITION OF ${parent} FOR VALUES WITH (MODULUS ${modulus}, REMAINDER ${slot}) (its rows are lost unless a backup has them)`));
        }
      }
    }
    if (findings.length === before) {
      const owned = slotMap.owners.filter((owner) => owner === name).length;
      findings.push(finding(name, 'slot_map_drift', 'ok', `its ${owned} owned slots are attached for all ${tables.length} tables, and no other`));
    }
  }
  return findings;
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
        const reason = error instanceof ReshardError ? error.line() : error instanceof Error ? error.message : String(error);
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
