import type pg from 'pg';
import { listNodes } from '../catalog/nodes.js';
import { insertReferenceTable, type ReferenceTableRecord } from '../catalog/referenceTables.js';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { quoteIdent } from '../core/identifier.js';
import { createReferenceTable as createReferenceTableOnNode, guardReferenceCopy } from '../node/referenceTable.js';
import { describeTable, type TableDescription } from '../node/tableDescription.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';
import { connectTo } from '../plumbing/connectTo.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';
import { AdoptionRefused } from './adoptionRefused.js';
import { checkAdoption } from './adoptPreflight.js';
import { syncReferenceCopies } from './referenceTables.js';

export interface AdoptReferenceRequest {
  schema?: string;
  name: string;
  /** The one server that holds the table: it must be a node of the cluster. */
  from: ConnectionSettings;
  headroomFraction?: number;
  syncTimeoutMs?: number;
}

/**
 * Adopts a plain table that lives on one of the cluster's nodes as a
 * reference table, online: that node becomes its holder, so the table stays
 * exactly where it is and its writers go on without a pause or a cutover;
 * every other node gets a read-only copy by logical replication (initial
 * copy, then every change). Refused with every problem the preflight finds,
 * nothing changed.
 */
export async function adoptReferenceTable(access: ClusterAccess, request: AdoptReferenceRequest): Promise<ReferenceTableRecord> {
  const schema = request.schema ?? 'public';
  const report = await checkAdoption(access, {
    schema, name: request.name, from: [request.from], key: [], reference: true,
    ...(request.headroomFraction !== undefined ? { headroomFraction: request.headroomFraction } : {}),
  });
  if (report.problems.length > 0) throw new AdoptionRefused(report.table, report.problems);
  const holder = report.sourceNodes[0]!;

  const source = await connectTo({ role: `source ${describeConnection(request.from)}`, connection: request.from }, 'reshard adopt');
  let described: TableDescription | undefined;
  try {
    described = await describeTable(source, schema, request.name);
  } finally {
    await source.end().catch(() => {});
  }
  if (!described) throw new ReshardError('not_found', `table ${report.table} disappeared from ${describeConnection(request.from)}`, 'check the name, then adopt again');
  const record: ReferenceTableRecord = { schema, name: request.name, holder, definition: referenceDefinition(described) };

  const nodes = await withCatalog(access, async (catalog) => {
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    const others = nodes.filter((node) => node.name !== holder);
    const clients: pg.Client[] = [];
    try {
      for (const node of others) clients.push(await connectNode(node, access.passwords));
      for (const client of clients) {
        await beginTransaction(client);
        await createReferenceTableOnNode(client, record);
        await guardReferenceCopy(client, record, holder);
      }
      await beginTransaction(catalog);
      await insertReferenceTable(catalog, record);
      await commitTransaction(catalog);
      for (const client of clients) await commitTransaction(client);
    } catch (error) {
      await rollbackQuietly(catalog);
      await Promise.all(clients.map((client) => rollbackQuietly(client)));
      throw error;
    } finally {
      await Promise.all(clients.map((client) => client.end().catch(() => {})));
    }
    return nodes;
  });
  await syncReferenceCopies(access, nodes, [record], nodes.filter((node) => node.name !== holder), request.syncTimeoutMs);
  return record;
}

/**
 * The column and constraint list the copies are made from (and a node added
 * later): columns with their types, collations and NOT NULL, defaults that
 * draw on no sequence, the primary key, unique and CHECK constraints. Copies
 * are read-only, so a sequence default stays on the holder's own table only.
 */
export function referenceDefinition(table: TableDescription): string {
  const columns = table.columns.map((column) => [
    quoteIdent(column.name),
    column.type,
    column.collation ? `COLLATE ${column.collation}` : '',
    column.notNull ? 'NOT NULL' : '',
    column.defaultExpression && !/\bnextval\(/i.test(column.defaultExpression) && column.identity === undefined ? `DEFAULT ${column.defaultExpression}` : '',
  ].filter(Boolean).join(' '));
  const constraints = [
    ...table.uniques.filter((unique) => unique.kind !== 'unique index').map((unique) => `CONSTRAINT ${quoteIdent(unique.name)} ${unique.definition}`),
    ...table.checks.map((check) => `CONSTRAINT ${quoteIdent(check.name)} ${check.definition}`),
  ];
  return [...columns, ...constraints].join(', ');
}
