import { addNode } from '../../admin/addNode.js';
import { createShardedTable } from '../../admin/createShardedTable.js';
import { createReferenceTable, readReferenceTables } from '../../admin/referenceTables.js';
import { moveReferenceHolder } from '../../admin/referenceHolder.js';
import { initCluster } from '../../admin/initCluster.js';
import { removeNode } from '../../admin/removeNode.js';
import { verifyCluster } from '../../admin/verifyCluster.js';
import { inspectSlot } from '../../admin/inspectSlot.js';
import { locateKey } from '../../admin/locateKey.js';
import { formatBytes } from '../../core/bytes.js';
import { setNode } from '../../admin/setNode.js';
import { describeTable, readNodeList, readShardedTables, type NodeRecord } from '../../admin/clusterContents.js';
import { describeConnection } from '../../core/connection.js';
import { describeParams } from '../../core/conninfo.js';
import { badInput } from '../../core/errors.js';
import { formatTable } from '../../planner/index.js';
import { withCatalog, type ClusterAccess } from '../../plumbing/clusterAccess.js';
import { parseUrlOption } from '../config.js';
import type { Output } from '../output.js';
import { parseByteSize, parsePositiveNumber, parseWholeNumber } from '../parseNumbers.js';

export async function initCommand(output: Output, access: ClusterAccess, options: { slots?: string }): Promise<void> {
  const slots = parseWholeNumber(options.slots, '--slots', 1, 256);
  const result = await initCluster(access, slots);
  output.result({ modulus: result.cluster.modulus, epoch: result.cluster.epoch, schema_versions_applied: result.schemaVersionsApplied });
  output.text(`Catalog ready at ${describeConnection(access.catalog)}: ${result.cluster.modulus} slots` +
    (result.schemaVersionsApplied.length ? ` (schema versions applied: ${result.schemaVersionsApplied.join(', ')})` : ' (already current)'));
}

export interface NodeAddOptions { url?: string; peerUrl?: string; weight?: string; concurrency?: string; capacity?: string }

/**
 * A password in --url or --peer-url serves this command only; later commands
 * take it from the config file or libpq conventions (PGPASSWORD, ~/.pgpass).
 */
function withPasswordGiven(access: ClusterAccess, name: string, passwordGiven: string | undefined): ClusterAccess {
  return passwordGiven === undefined ? access : { ...access, passwords: (nodeName) => (nodeName === name ? passwordGiven : access.passwords(nodeName)) };
}

const PASSWORD_NOT_STORED = 'the password in the URL is not stored; give it to later commands via reshard.json "passwords", PGPASSWORD or ~/.pgpass';

export async function nodeAddCommand(output: Output, access: ClusterAccess, name: string, options: NodeAddOptions): Promise<void> {
  if (!options.url) throw badInput('node add needs the node\'s connection', 'pass --url postgres://user@host:port/database');
  const connection = parseUrlOption(options.url, '--url');
  const peerConnection = options.peerUrl !== undefined ? parseUrlOption(options.peerUrl, '--peer-url') : undefined;
  const passwordGiven = connection.password ?? peerConnection?.password;
  const accessWithPassword = withPasswordGiven(access, name, passwordGiven);
  const capacityBytes = parseByteSize(options.capacity, '--capacity');
  const result = await addNode(accessWithPassword, {
    name,
    connection,
    ...(peerConnection ? { peerConnection } : {}),
    weight: parsePositiveNumber(options.weight, '--weight', 1),
    concurrencyMax: parseWholeNumber(options.concurrency, '--concurrency', 1, 2),
    ...(capacityBytes !== undefined ? { capacityBytes } : {}),
  });
  for (const warning of result.warnings) output.warn(warning);
  if (passwordGiven !== undefined) output.warn(PASSWORD_NOT_STORED);
  output.result({ node: result.node.name, connection: describeConnection(result.node.connection), ...connectionDetails(result.node), server_version: result.node.serverVersion, slot_map_respread: result.slotMapRespread, warnings: result.warnings });
  output.text(`Added node ${result.node.name} (${describeConnection(result.node.connection)}, PostgreSQL ${result.node.serverVersion}).` +
    (result.slotMapRespread ? ' The cluster holds no data yet, so the slot map was spread over all nodes.' : ' Run `reshard rebalance` to give it slots.'));
}

export interface NodeSetOptions { url?: string; peerUrl?: string; weight?: string; concurrency?: string; capacity?: string }

export async function nodeSetCommand(output: Output, access: ClusterAccess, name: string, options: NodeSetOptions): Promise<void> {
  const connection = options.url !== undefined ? parseUrlOption(options.url, '--url') : undefined;
  const peerConnection = options.peerUrl !== undefined ? parseUrlOption(options.peerUrl, '--peer-url') : undefined;
  const weight = options.weight !== undefined ? parsePositiveNumber(options.weight, '--weight', 1) : undefined;
  const concurrencyMax = options.concurrency !== undefined ? parseWholeNumber(options.concurrency, '--concurrency', 1) : undefined;
  const capacityBytes = parseByteSize(options.capacity, '--capacity');
  if ([connection, peerConnection, weight, concurrencyMax, capacityBytes].every((value) => value === undefined)) {
    throw badInput('node set needs something to change', 'pass --url, --peer-url, --weight, --concurrency or --capacity');
  }
  const passwordGiven = connection?.password ?? peerConnection?.password;
  const result = await setNode(withPasswordGiven(access, name, passwordGiven), {
    name,
    ...(connection ? { connection } : {}),
    ...(peerConnection ? { peerConnection } : {}),
    ...(weight !== undefined ? { weight } : {}),
    ...(concurrencyMax !== undefined ? { concurrencyMax } : {}),
    ...(capacityBytes !== undefined ? { capacityBytes } : {}),
  });
  for (const warning of result.warnings) output.warn(warning);
  if (passwordGiven !== undefined) output.warn(PASSWORD_NOT_STORED);
  output.result({ node: result.node.name, changed: result.changed, connection: describeConnection(result.node.connection), ...connectionDetails(result.node),
    weight: result.node.weight, concurrency_max: result.node.concurrencyMax, capacity_bytes: result.node.capacityBytes ?? null, warnings: result.warnings });
  output.text(result.changed.length === 0
    ? `Node ${name} already had these values.`
    : `Node ${name}: changed ${result.changed.join(', ')}.` + (result.changed.includes('weight') ? ' Run `reshard rebalance` to move slots to the new weights.' : ''));
}

/** A node's params and peer address, as `node list` and `node add` show them: never a password. */
function connectionDetails(node: NodeRecord): { params: string | null; peer: string | null } {
  const peer = node.peerConnection;
  return {
    params: describeParams(node.connection.params) || null,
    peer: peer ? [describeConnection(peer), describeParams(peer.params)].filter(Boolean).join(' ') : null,
  };
}

export async function nodeRemoveCommand(output: Output, access: ClusterAccess, name: string): Promise<void> {
  const result = await removeNode(access, name);
  output.result(result);
  output.text(result.state === 'removed'
    ? `Removed node ${name} (it owned no slots).`
    : `Node ${name} is draining: run \`reshard rebalance\` to move its ${result.slotsOwned} slots to the other nodes.`);
}

export async function nodeListCommand(output: Output, access: ClusterAccess): Promise<void> {
  const { nodes, owners } = await readNodeList(access);
  const rows = nodes.map((node) => ({
    name: node.name,
    connection: describeConnection(node.connection),
    ...connectionDetails(node),
    state: node.state,
    weight: node.weight,
    slots: owners.filter((owner) => owner === node.name).length,
    concurrency_max: node.concurrencyMax,
    server_version: node.serverVersion ?? null,
  }));
  output.result({ nodes: rows });
  output.text(formatTable([
    ['name', 'connection', 'params', 'peer address', 'state', 'weight', 'slots', 'version'],
    ...rows.map((row) => [row.name, row.connection, row.params ?? '', row.peer ?? '', row.state, String(row.weight), String(row.slots), row.server_version ?? '?']),
  ]));
}

export interface TableCreateOptions { key?: string; columns?: string; colocateWith?: string; schema?: string; reference?: boolean; holder?: string }

export async function tableCreateCommand(output: Output, access: ClusterAccess, name: string, options: TableCreateOptions): Promise<void> {
  if (options.reference) return referenceTableCreateCommand(output, access, name, options);
  if (options.holder) throw badInput('--holder is for reference tables', 'add --reference, or drop --holder');
  if (!options.key) throw badInput('table create needs a shard key', 'pass --key <column>[,<column>]');
  if (!options.columns) throw badInput('table create needs the column list', "pass --columns 'id bigint NOT NULL, …, PRIMARY KEY (id)'");
  const table = await createShardedTable(access, {
    name,
    shardKey: options.key.split(',').map((column) => column.trim()).filter(Boolean),
    definition: options.columns,
    ...(options.schema ? { schema: options.schema } : {}),
    ...(options.colocateWith ? { colocateWith: options.colocateWith } : {}),
  });
  output.result({ table: describeTable(table), shard_key: table.shardKey, key_types: table.keyTypes, colocation_group: table.colocationGroup });
  output.text(`Created sharded table ${describeTable(table)} by (${table.shardKey.join(', ')}) in colocation group ${table.colocationGroup}.`);
}

async function referenceTableCreateCommand(output: Output, access: ClusterAccess, name: string, options: TableCreateOptions): Promise<void> {
  if (options.key) throw badInput('a reference table has no shard key', 'drop --key (or --reference for a sharded table)');
  if (options.colocateWith) throw badInput('a reference table is on every node: it has no colocation', 'drop --colocate-with');
  if (!options.columns) throw badInput('table create needs the column list', "pass --columns 'code text PRIMARY KEY, …'");
  const table = await createReferenceTable(access, {
    name,
    definition: options.columns,
    ...(options.schema ? { schema: options.schema } : {}),
    ...(options.holder ? { holder: options.holder } : {}),
  });
  output.result({ table: describeTable(table), kind: 'reference', holder: table.holder });
  output.text(`Created reference table ${describeTable(table)}, held by ${table.holder} and replicated to every other node.`);
}

export async function tableSetHolderCommand(output: Output, access: ClusterAccess, name: string, holder: string, options: { schema?: string }): Promise<void> {
  const table = await moveReferenceHolder(access, { name, holder, ...(options.schema ? { schema: options.schema } : {}) });
  output.result({ table: describeTable(table), kind: 'reference', holder: table.holder });
  output.text(`Reference table ${describeTable(table)} is now held by ${table.holder}.`);
}

export async function tableListCommand(output: Output, access: ClusterAccess): Promise<void> {
  const tables = await readShardedTables(access);
  const references = await readReferenceTables(access);
  output.result({
    tables: [
      ...tables.map((table) => ({ table: describeTable(table), kind: 'sharded', shard_key: table.shardKey, key_types: table.keyTypes, colocation_group: table.colocationGroup })),
      ...references.map((table) => ({ table: describeTable(table), kind: 'reference', holder: table.holder })),
    ],
  });
  output.text(formatTable([
    ['table', 'kind', 'shard key', 'key types', 'colocation group / holder'],
    ...tables.map((table) => [describeTable(table), 'sharded', table.shardKey.join(', '), table.keyTypes.join(', '), table.colocationGroup]),
    ...references.map((table) => [describeTable(table), 'reference', '', '', `held by ${table.holder}`]),
  ]));
}

export async function verifyCommand(output: Output, access: ClusterAccess): Promise<boolean> {
  const report = await verifyCluster(access);
  output.result({ verified: report.ok, epoch: report.epoch, rows_by_table: report.rowsByTable, rows_total: report.rowsTotal, problems: report.problems });
  for (const problem of report.problems) output.text(`  problem: ${problem}`);
  output.text(report.ok
    ? `Verified: every slot of every table is attached on its owner only (epoch ${report.epoch}); ${report.rowsTotal} rows.`
    : `Verification found ${report.problems.length} problem(s).`);
  return report.ok;
}

export async function slotCommand(output: Output, access: ClusterAccess, slotText: string, options: { node?: string }): Promise<void> {
  const slot = parseWholeNumber(slotText, 'slot', 0);
  const report = await inspectSlot(access, slot, options.node);
  output.result(report);
  output.text(`Slot ${report.slot}: owner ${report.owner} (${report.state}); read from ${report.readFrom}`);
  output.text(formatTable([
    ['table', 'leaf', 'attached', 'rows', 'size', 'checksum'],
    ...report.tables.map((table) => [table.table, table.leaf, table.attached ? 'yes' : 'no', String(table.rows), formatBytes(table.bytes), table.checksum]),
  ]));
}

export async function slotOfCommand(output: Output, access: ClusterAccess, table: string, key: string[]): Promise<void> {
  const location = await locateKey(access, table, key);
  output.result({
    table: location.table,
    shard_key: location.shardKey,
    key_types: location.keyTypes,
    key: location.key,
    slot: location.slot,
    owner: location.owner,
    connection: location.connection,
    state: location.state,
  });
  output.text(`${location.table} (${location.shardKey.join(', ')}) = (${location.key.join(', ')}): slot ${location.slot}, owner ${location.owner} (${location.connection})` +
    (location.state === 'frozen' ? ', frozen: a move is switching it' : ''));
}
