import { identityChangedError, recordNodeIdentity, SAME_DATABASE_FIX_RECORDED, sameDatabase, sameDatabaseError } from '../catalog/nodeIdentity.js';
import type { DatabaseIdentity, NodeRecord } from '../catalog/nodes.js';
import type { Queryable } from '../plumbing/queryable.js';
import { readDatabaseIdentity } from '../node/databaseIdentity.js';

/** One end of a move: the node as the catalog knows it, and the session the move will use on it. */
export interface MoveEnd {
  node: NodeRecord;
  session: Queryable;
}

/**
 * Invariant 7 at the moment it matters, before a move's first step (and
 * before a rollback touches a move's nodes): the sessions the move will use
 * reach two different databases, each the one recorded for its node. The
 * catalog's columns alone cannot say this — a DNS change can point a name at
 * another database after `node add` — so both identities are read live, on
 * the very sessions that will copy, compare and drop. A node recorded before
 * identities were kept gets its identity recorded here.
 */
export async function assertDistinctDatabases(catalog: Queryable, source: MoveEnd, target: MoveEnd): Promise<void> {
  const sourceIdentity = await readDatabaseIdentity(source.session, `node "${source.node.name}"`);
  const targetIdentity = await readDatabaseIdentity(target.session, `node "${target.node.name}"`);
  if (sameDatabase(sourceIdentity, targetIdentity)) throw sameDatabaseError(source.node.name, target.node.name, sourceIdentity, SAME_DATABASE_FIX_RECORDED);
  await assertRecordedIdentity(catalog, source.node, sourceIdentity);
  await assertRecordedIdentity(catalog, target.node, targetIdentity);
}

/** The database a node's session reaches is the one recorded for it; recorded now when it never was. */
export async function assertRecordedIdentity(catalog: Queryable, node: NodeRecord, identity: DatabaseIdentity): Promise<void> {
  if (node.identity === undefined) {
    await recordNodeIdentity(catalog, node.name, identity);
    return;
  }
  if (!sameDatabase(node.identity, identity)) throw identityChangedError(node.name, node.identity, identity);
}
