import type pg from 'pg';
import { getAdoption, registeredDefinition, storedAdoptionDefinition, type AdoptionSource } from '../catalog/adoptions.js';
import { holdMigration } from '../catalog/migrationRuns.js';
import { listNodes } from '../catalog/nodes.js';
import { readSlotMap } from '../catalog/slotMap.js';
import { adoptNames } from '../core/adoptNames.js';
import { assert } from '../core/assert.js';
import { isMixedSlotMap, type SlotMap } from '../core/slotMap.js';
import { describeConnection, type ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectTo } from '../plumbing/connectTo.js';
import { LogicalChangeStream } from '../node/logicalChangeStream.js';
import { ADOPT_LIMITS_DEFAULT, type AdoptContext, type AdoptLimits } from '../mover/adoptContext.js';
import type { StepEvent } from '../mover/stepRunner.js';

/**
 * Opens what an adoption's steps (or its rollback, or forget-source) need —
 * the catalog holding the migration's liveness lock, sessions to sources and
 * nodes made on first use — runs `work`, and closes them all.
 * Source passwords: those given on the command line this run, else libpq's
 * (PGPASSWORD, ~/.pgpass); a source that is a node uses the node's.
 */
export async function withAdoptContext<T>(
  access: ClusterAccess,
  migrationId: number,
  sourcePasswords: ReadonlyMap<number, string | undefined>,
  options: { limits?: Partial<AdoptLimits> | undefined; emit?: ((event: StepEvent) => void) | undefined },
  work: (context: AdoptContext, catalog: pg.Client) => Promise<T>,
): Promise<T> {
  const catalog = await connectCatalog(access, 'reshard adopt');
  const sessions = new Map<string, Promise<pg.Client>>();
  const changeStreams = new Map<number, Promise<LogicalChangeStream>>();
  const closeChangeStream = async (index: number): Promise<void> => {
    const stream = changeStreams.get(index);
    changeStreams.delete(index);
    await stream?.then((opened) => opened.close()).catch(() => {});
  };
  try {
    if (!(await holdMigration(catalog, migrationId))) {
      throw new ReshardError('conflict', `adoption ${migrationId} is being run by another reshard process`, 'wait for it (`reshard status`)');
    }
    const adoption = await getAdoption(catalog, migrationId);
    if (!adoption) throw new ReshardError('not_found', `migration ${migrationId} is not an adoption`, 'see `reshard status`');
    const nodes = (await listNodes(catalog)).filter((node) => node.state !== 'removed');
    const slotMap = await readSlotMap(catalog);
    const plan = await storedAdoptionDefinition(catalog, migrationId);
    const registered = await registeredDefinition(catalog, adoption);
    const nodeByName = new Map(nodes.map((node) => [node.name, node]));
    const nodeConnection = (name: string): ConnectionSettings => {
      const node = nodeByName.get(name);
      if (!node) throw new ReshardError('precondition', `node ${name} is not in the cluster any more`, 'see `reshard node list`');
      const password = access.passwords(name);
      return { ...node.connection, ...(password !== undefined ? { password } : {}) };
    };
    const sourceConnection = (index: number): ConnectionSettings => {
      const source: AdoptionSource = adoption.sources[index]!;
      if (source.node !== undefined && nodeByName.has(source.node)) return nodeConnection(source.node);
      const password = sourcePasswords.get(index);
      return { ...source.connection, ...(password !== undefined ? { password } : {}) };
    };
    const sourceName = (index: number): string => {
      const source = adoption.sources[index]!;
      return source.node !== undefined ? `node ${source.node}` : describeConnection(source.connection);
    };
    const open = (key: string, connection: ConnectionSettings, role: string): Promise<pg.Client> => {
      let session = sessions.get(key);
      if (!session) {
        session = connectTo({ role, connection }, 'reshard adopt');
        sessions.set(key, session);
      }
      return session;
    };
    const context: AdoptContext = {
      adoption, names: adoptNames(adoption.name, migrationId), modulus: slotMap.modulus, owners: unsplitOwners(slotMap), nodes,
      definition: registered?.definition ?? plan.definition ?? '', colocationGroup: registered?.colocationGroup ?? plan.colocationGroup ?? adoption.name,
      limits: { ...ADOPT_LIMITS_DEFAULT, ...options.limits }, catalog,
      source: (index) => open(`source:${index}`, sourceConnection(index), `source ${sourceName(index)}`),
      node: (name) => open(`node:${name}`, nodeConnection(name), `node "${name}"`),
      changeStream: (index) => {
        const opened = changeStreams.get(index);
        if (opened) return opened;
        const opening = context.source(index).then((control) => LogicalChangeStream.open(sourceConnection(index), control, context.names.slotName(index), `source ${sourceName(index)}`));
        changeStreams.set(index, opening);
        // A stream that failed to open is opened again at the next use.
        opening.catch(() => {
          if (changeStreams.get(index) === opening) changeStreams.delete(index);
        });
        return opening;
      },
      closeChangeStream,
      sourceConnection, nodeConnection, sourceName, fences: new Map(), logsRunningTransactions: new Map(), emit: options.emit ?? (() => {}),
    };
    return await work(context, catalog);
  } finally {
    for (const index of [...changeStreams.keys()]) await closeChangeStream(index);
    for (const session of sessions.values()) await session.then((client) => client.end()).catch(() => {});
    await catalog.end().catch(() => {});
  }
}

/** Adoption copies by the cluster's one modulus: a map with split slots is refused (the slots are merged back first). */
export function unsplitOwners(slotMap: SlotMap): string[] {
  if (isMixedSlotMap(slotMap)) {
    throw new ReshardError('unsupported', 'the cluster has split slots, and adoption copies by the cluster\'s one modulus only (for now)',
      'run the adoption before splitting, or `reshard merge` the split slots first');
  }
  return slotMap.owners.map((owner, slot) => {
    assert(owner !== undefined, `slot ${slot} of an unsplit map has no owner`);
    return owner;
  });
}
