import { latestAdoption, setAdoptionState } from '../catalog/adoptions.js';
import { ReshardError } from '../core/errors.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { dropSourceFenceFunction, dropSourceTable, tableExists } from '../node/adoptSource.js';
import { dropKeyLog } from '../node/adoptTarget.js';
import { withAdoptContext } from './adoptSession.js';
import { oldTableOf } from './rollbackAdoption.js';
import { dropSourceRowSums } from '../node/adoptSourceRowSums.js';

export interface ForgetSourceResult {
  migrationId: number;
  /** The old tables dropped, as `source: schema.name`. */
  dropped: string[];
}

/**
 * `reshard table forget-source TABLE`: the end of an adoption. Drops the old
 * table (kept fenced since the switch) on every source and the nodes' key
 * logs; after this, `reshard rollback` can no longer take the adoption back.
 */
export async function forgetAdoptedSource(access: ClusterAccess, request: { schema?: string; name: string }): Promise<ForgetSourceResult> {
  const table = { schema: request.schema ?? 'public', name: request.name };
  const catalog = await connectCatalog(access, 'reshard forget-source');
  let migrationId: number;
  try {
    const adoption = await latestAdoption(catalog, table);
    if (!adoption) throw new ReshardError('not_found', `no adoption of "${request.name}" is recorded`, 'see `reshard table list`');
    if (adoption.state === 'forgotten') return { migrationId: adoption.migrationId, dropped: [] };
    if (adoption.state !== 'switched' || adoption.migrationState !== 'completed') {
      throw new ReshardError('precondition', `the adoption of "${request.name}" has not finished (${adoption.state})`, 'finish it with `reshard resume` (or take it back with `reshard rollback`) first');
    }
    migrationId = adoption.migrationId;
  } finally {
    await catalog.end().catch(() => {});
  }
  return withAdoptContext(access, migrationId, new Map(), {}, async (context, held) => {
    const dropped: string[] = [];
    for (const [index] of context.adoption.sources.entries()) {
      const session = await context.source(index);
      const old = oldTableOf(context, index);
      if (await tableExists(session, old)) {
        await dropSourceTable(session, old);
        dropped.push(`${context.sourceName(index)}: ${old.schema}.${old.name}`);
      }
      await dropSourceFenceFunction(session);
      await dropSourceRowSums(session);
    }
    for (const node of context.nodes) await dropKeyLog(await context.node(node.name), context.adoption, migrationId);
    await setAdoptionState(held, migrationId, 'forgotten');
    return { migrationId, dropped };
  });
}
