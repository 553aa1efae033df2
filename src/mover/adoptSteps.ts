import { randomUUID } from 'node:crypto';
import { announceCutover, registerAdoptingTable, setAdoptionState, switchAdoptedTable, unregisterAdoptedTable } from '../catalog/adoptions.js';
import { sequenceBlocks } from '../catalog/sequenceBlocks.js';
import { ReshardError } from '../core/errors.js';
import { sequenceBlockRange } from '../core/sequenceBlock.js';
import { withTimeout, waitFor } from '../plumbing/waitFor.js';
import { beginTransaction, commitTransaction, rollbackQuietly } from '../plumbing/transaction.js';
import {
  copySourceRowsToOwnersAtSnapshot, fenceSourceTable, keysInSlots, rowsByKey, splitPrimaryKey, statsBySlot, unfenceSourceTable,
} from '../node/adoptSource.js';
import {
  addStagedPrimaryKey, createStagedParent, dropStagedParent, dropStagedPrimaryKey, installKeyLog, removeKeyLog, switchNodeToAdoptedTable, truncateStagedParent, unswitchNode,
} from '../node/adoptTarget.js';
import { installNodeHelpers } from '../node/nodeHelpers.js';
import { confineTableSequences } from '../node/sequenceRange.js';
import { endSlotHolder } from '../node/logicalChangeStream.js';
import { dropReplicationSlot } from '../node/replication.js';
import { createSlotWithExportedSnapshot } from '../node/snapshotCopy.js';
import { applyChanges, applyFinalChanges, duplicateKeyError } from './adoptChanges.js';
import { sourceRowSumsSql } from '../node/adoptSourceRowSums.js';
import { compareAdoptedRowSums, trackAdoptedRows, trackOwnersRows, trackSourcesRows, untrackAdoptedRows } from './adoptRowSums.js';
import type { AdoptContext } from './adoptContext.js';
import type { MoveStep } from './moveStep.js';

/**
 * An adoption as named steps on the one step runner (journaled per step,
 * skipped when done on resume, undone in reverse before the switch). The
 * whole adoption is one unit of the journal (slot 0 of its migration): every
 * step works on all sources and all nodes at once.
 */
type AdoptStep = MoveStep<AdoptContext>;

/** The journal's unit for an adoption's steps. */
export const ADOPT_JOURNAL_UNIT = 0;

function ownedSlots(context: AdoptContext, node: string): number[] {
  return context.owners.flatMap((owner, slot) => (owner === node ? [slot] : []));
}

function tableNames(context: AdoptContext): { schema: string; name: string; stagedName: string; keyColumn: string; keyType: AdoptContext['adoption']['keyType'] } {
  const { adoption } = context;
  return { schema: adoption.schema, name: adoption.name, stagedName: adoption.stagedName, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
}

/** Every node's session in an open transaction, the nodes at once; all commit only when all succeeded. */
async function onEveryNode(context: AdoptContext, work: (node: string) => Promise<void>): Promise<void> {
  const sessions = await Promise.all(context.nodes.map(async (node) => ({ name: node.name, session: await context.node(node.name) })));
  try {
    const done = await Promise.allSettled(sessions.map(async ({ name, session }) => {
      await beginTransaction(session);
      await work(name);
    }));
    const failed = done.find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    await Promise.all(sessions.map(async ({ session }) => commitTransaction(session)));
  } catch (error) {
    await Promise.all(sessions.map(({ session }) => rollbackQuietly(session)));
    throw error;
  }
}

const prepare: AdoptStep = {
  name: 'prepare',
  describe: () => 'catalog: register the table as adopting; on every node: the hash-partitioned parent under a staged name (its primary key comes after the copy), with the leaves of the slots the node owns (named after the table), its sequences (bigserial, identity) confined to the node\'s block',
  async do(context) {
    const blocks = await sequenceBlocks(context.catalog);
    await onEveryNode(context, async (name) => {
      const session = await context.node(name);
      await installNodeHelpers(session);
      // Without its primary key: the copy loads index-free leaves, and the stream builds the key once they are full.
      await createStagedParent(session, tableNames(context), splitPrimaryKey(context.definition).columns, ownedSlots(context, name), context.modulus);
      // Each node's own sequence (bigserial, identity) draws from the node's block from the start: above every adopted key (< 2^48).
      const block = blocks.get(name);
      if (block === undefined) throw new ReshardError('precondition', `node ${name} has no sequence block in the catalog`, 'run `reshard init` to upgrade the catalog schema');
      await confineTableSequences(session, { schema: context.adoption.schema, name: context.adoption.stagedName }, sequenceBlockRange(block));
    });
    const { adoption } = context;
    await registerAdoptingTable(context.catalog, {
      schema: adoption.schema, name: adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType,
      colocationGroup: context.colocationGroup, definition: context.definition,
    });
  },
  async undo(context) {
    for (const node of context.nodes) await dropStagedParent(await context.node(node.name), tableNames(context));
    await unregisterAdoptedTable(context.catalog, context.adoption);
  },
};

const stream: AdoptStep = {
  name: 'stream',
  describe: () => 'on each source: a logical replication slot (test_decoding) with an exported snapshot; the table copied at that snapshot in one binary COPY stream (one scan, each row led by its slot), split by slot to one binary COPY per owner into index-free leaves (routed by the staged parent); once every source is in, the primary key built on every owner (a key on two sources fails here) while each source starts its row sums (one scan; cleanup or an undo ends them); then the changes since, read from each slot as a stream (START_REPLICATION) and applied by key (rows read again from the sources), in rounds until a round finds few changed keys',
  async do(context) {
    const { adoption } = context;
    // Idempotent as a whole: a copy interrupted anywhere starts again from empty, index-free leaves and new slots.
    await Promise.all(context.nodes.map(async (node) => {
      const session = await context.node(node.name);
      await truncateStagedParent(session, tableNames(context));
      await dropStagedPrimaryKey(session, tableNames(context));
    }));
    const owners = context.nodes.filter((node) => ownedSlots(context, node.name).length > 0);
    const copyStartedMs = performance.now();
    let rows = 0;
    for (const [index] of adoption.sources.entries()) {
      const slotName = context.names.slotName(index);
      await dropChangeSlot(context, index);
      const exported = await createSlotWithExportedSnapshot(context.sourceConnection(index), slotName, 'test_decoding');
      try {
        const copy = copySourceRowsToOwnersAtSnapshot(
          context.sourceConnection(index), owners.map((node) => ({ connection: context.nodeConnection(node.name), slots: ownedSlots(context, node.name) })), exported.snapshotName,
          { schema: adoption.schema, name: adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType, modulus: context.modulus },
          { schema: adoption.schema, name: adoption.stagedName }, () => {},
        );
        const copied = await withTimeout(`the copy of ${adoption.name} from ${context.sourceName(index)}`, copy, context.limits.copyTimeoutMs,
          'check both servers\' logs, then `reshard resume` (the copy starts again)');
        rows += copied.reduce((sum, count) => sum + count, 0);
      } finally {
        await exported.release();
      }
    }
    const keyStartedMs = performance.now();
    // The sources' row sums (one scan of each source, on its own server) while the owners build their keys, instead
    // of in the freeze step: less time between the copy and the pause. Both settle before either's failure is thrown,
    // so an undo never races a scan still starting the sums.
    let sourceSumsMs = 0;
    const [sums, keys] = await Promise.allSettled([
      trackSourcesRows(context).finally(() => { sourceSumsMs = performance.now() - keyStartedMs; }),
      buildStagedPrimaryKeys(context),
    ]);
    if (keys.status === 'rejected') throw keys.reason;
    if (sums.status === 'rejected') throw sums.reason;
    context.sourceRowSumsKept = sums.value;
    const catchUpStartedMs = performance.now();
    await catchUp(context);
    return {
      rowsCopied: rows, copyMs: Math.round(keyStartedMs - copyStartedMs), keyBuildMs: Math.round(catchUpStartedMs - keyStartedMs),
      sourceRowSumsMs: Math.round(sourceSumsMs), catchUpMs: Math.round(performance.now() - catchUpStartedMs),
    };
  },
  async undo(context) {
    for (const [index] of context.adoption.sources.entries()) await dropChangeSlot(context, index);
    // The sources' row sums this step may have started (idempotent: nothing to end is no error).
    await untrackAdoptedRows(context);
  },
};

/**
 * Drops source `index`'s replication slot, if there is one: after this run's
 * stream on it is closed, and the walsender of an earlier run's lost
 * connection (a crash, a network cut) ended.
 */
async function dropChangeSlot(context: AdoptContext, index: number): Promise<void> {
  await context.closeChangeStream(index);
  const source = await context.source(index);
  await endSlotHolder(source, context.names.slotName(index), context.sourceName(index));
  await dropReplicationSlot(source, context.names.slotName(index));
}

/**
 * The staged parent's primary key built on every owner at once, after the
 * copy. A key held by two sources is refused here (the leaves took both rows),
 * named with the sources that hold it.
 */
async function buildStagedPrimaryKeys(context: AdoptContext): Promise<void> {
  const { adoption } = context;
  const { primaryKey } = splitPrimaryKey(context.definition);
  try {
    await Promise.all(context.nodes.map(async (node) => addStagedPrimaryKey(await context.node(node.name), tableNames(context), primaryKey)));
  } catch (error) {
    if ((error as { code?: string }).code !== '23505') throw error;
    const key = /Key \((.*?)\)=\((.*)\) is duplicated/.exec((error as { detail?: string }).detail ?? '')?.[2];
    const table = { schema: adoption.schema, name: adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
    const holders = key === undefined ? [] : (await Promise.all(adoption.sources.map(async (_, index) => (await rowsByKey(await context.source(index), table, [key])).has(key))))
      .flatMap((holds, index) => (holds ? [index] : []));
    const last = holders.at(-1);
    throw new ReshardError('conflict', `key ${key ?? '(see the server log)'} of ${adoption.name} is on ${last === undefined ? 'a source' : context.sourceName(last)} and on another source before it`,
      'a sharded table holds each key once: remove or renumber the duplicates on the sources, then adopt again (nothing was switched; the adoption was undone)');
  }
}

/** Applies the streams in rounds until a round finds few changed keys: the cutover's final round is then short. */
async function catchUp(context: AdoptContext): Promise<number> {
  const { adoption, limits } = context;
  let lastRoundKeys = 0;
  await waitFor(`catch-up of ${adoption.name} to within ${limits.catchupKeysMax} changed keys`, async () => {
    lastRoundKeys = await applyChanges(context);
    return lastRoundKeys <= limits.catchupKeysMax ? true : undefined;
  }, { timeoutMs: limits.catchupTimeoutMs, pollMs: 1, fix: 'the sources write faster than reshard applies; retry with `reshard resume` when the load is lower' });
  return lastRoundKeys;
}

/** Rounds of `closeIn` at most, whatever the keys found: a bound, not a wait for a rate that may never come. */
const CLOSE_IN_ROUNDS_MAX = 4;

/**
 * After the catch-up, just before the fence: more rounds, each applying what
 * came in during the one before — fewer keys, so a shorter round, so fewer
 * keys again — until a round finds no fewer than the one before (the floor
 * the write rate sets) or CLOSE_IN_ROUNDS_MAX rounds. The final sync, which
 * is write pause, then applies what one short round lets in: measured, the
 * catch-up's last round (up to `catchupKeysMax` keys) left ~140 keys and
 * ~55 ms of refresh to the pause. Returns the keys the last round found.
 */
async function closeIn(context: AdoptContext, keysBefore: number): Promise<number> {
  let keys = keysBefore;
  for (let round = 0; round < CLOSE_IN_ROUNDS_MAX; round++) {
    const found = await applyChanges(context);
    if (found >= keys) return found;
    keys = found;
  }
  return keys;
}

const freeze: AdoptStep = {
  name: 'freeze',
  describe: () => 'row sums started on every owner (one scan each; on the sources too after a resume; cleanup or an undo ends them); on every node the staged table\'s key log (keys written from now on, for a rollback); catch up once more, then a few shorter rounds while each finds fewer changed keys; then at once — catalog: the adoption enters cutover (epoch + 1, NOTIFY: routers hold calls for the table); on each source, one transaction in one round trip: LOCK the table IN EXCLUSIVE MODE, a trigger that rejects every write with SQLSTATE RSM01, the row sums read under the lock, a marker written into the WAL, the WAL position read',
  async do(context) {
    const sumsStartedMs = performance.now();
    // The sources' sums were started beside the key build in this run; after a resume, both sides start here.
    const startedBefore = context.sourceRowSumsKept;
    const sumsKept = startedBefore === undefined ? await trackAdoptedRows(context) : (await trackOwnersRows(context), startedBefore);
    const keyLogStartedMs = performance.now();
    // Before the pause: creating the trigger on every leaf is not cheap (see installKeyLog).
    await Promise.all(context.nodes.map(async (node) => installKeyLog(await context.node(node.name), tableNames(context), context.adoption.migrationId)));
    // The staged table is final on the nodes now (its key, its key log): routers warm their node sessions on it during the catch-up.
    await announceCutover(context.catalog, context.adoption.migrationId);
    const catchUpStartedMs = performance.now();
    const lastRoundKeys = await closeIn(context, await catchUp(context));
    // The hold starts here: everything after this is write pause, so the state and the fences go out together
    // (a routed call that meets a fence before its router sees the state is held and sent again all the same).
    const fencedAt = performance.now();
    const { adoption } = context;
    const [, fences] = await Promise.all([
      setAdoptionState(context.catalog, adoption.migrationId, 'cutover'),
      Promise.all(adoption.sources.map(async (_, index) => fenceSourceTable(await context.source(index), adoption, context.limits.fenceLockTimeoutMs, {
        marker: `m${adoption.migrationId}-fence-${randomUUID()}`,
        ...(sumsKept[index] ? { sumsSql: sourceRowSumsSql(adoption) } : {}),
      }))),
    ]);
    const lsns: Record<string, string> = {};
    for (const [index, fence] of fences.entries()) {
      context.fences.set(index, fence);
      lsns[context.sourceName(index)] = fence.lsn;
    }
    return {
      fencedLsn: lsns, rowSumsMs: Math.round(keyLogStartedMs - sumsStartedMs), keyLogMs: Math.round(catchUpStartedMs - keyLogStartedMs),
      catchUpMs: Math.round(fencedAt - catchUpStartedMs), lastRoundKeys, fenceMs: Math.round(performance.now() - fencedAt),
    };
  },
  async undo(context) {
    await untrackAdoptedRows(context);
    for (const node of context.nodes) await removeKeyLog(await context.node(node.name), tableNames(context), context.adoption.migrationId);
    for (const [index] of context.adoption.sources.entries()) await unfenceSourceTable(await context.source(index), context.adoption);
    await setAdoptionState(context.catalog, context.adoption.migrationId, 'streaming');
  },
};

const sync: AdoptStep = {
  name: 'sync',
  describe: () => 'every source\'s changes up to the marker its fence wrote (so past every write the old table accepted), the sources read at once and their last changed keys applied together',
  async do(context) {
    return applyFinalChanges(context);
  },
};

const verify: AdoptStep = {
  name: 'verify',
  describe: () => 'the row sums (count and checksum) of the sources against the owners\' leaves, read at once; where a side has none, or they differ: per slot, a scan of the sources against the owners, and a key on two sources is named',
  async do(context) {
    const { adoption } = context;
    const sums = await compareAdoptedRowSums(context);
    if (sums.outcome === 'equal') return { rows: sums.rows, verifiedBy: 'row sums' };
    const table = { schema: adoption.schema, name: adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
    // Sources and owners scanned at once (the sources are fenced, the owners take nothing else): the scan is write pause.
    const [onSources, onOwners] = await Promise.all([
      Promise.all(adoption.sources.map(async (_, index) => statsBySlot(await context.source(index), table, context.modulus))),
      Promise.all(context.nodes.map(async (node) => statsBySlot(await context.node(node.name), { ...table, name: adoption.stagedName }, context.modulus))),
    ]);
    const differing: number[] = [];
    let firstDifference = '';
    let rows = 0;
    for (let slot = 0; slot < context.modulus; slot++) {
      const sourceRows = onSources.reduce((sum, stats) => sum + (stats.get(slot)?.rows ?? 0), 0);
      const sourceChecksum = onSources.reduce((sum, stats) => sum + BigInt(stats.get(slot)?.checksum ?? '0'), 0n);
      const ownerRows = onOwners.reduce((sum, stats) => sum + (stats.get(slot)?.rows ?? 0), 0);
      const ownerChecksum = onOwners.reduce((sum, stats) => sum + BigInt(stats.get(slot)?.checksum ?? '0'), 0n);
      // Rows of a slot on a node that does not own it cannot be: the node's parent has no partition for them.
      if (sourceRows !== ownerRows || sourceChecksum !== ownerChecksum) {
        differing.push(slot);
        if (differing.length === 1) firstDifference = `slot ${slot}: ${sourceRows} rows on the sources, ${ownerRows} on the owners, checksums ${sourceChecksum === ownerChecksum ? 'equal' : 'differ'}`;
      }
      rows += ownerRows;
    }
    if (differing.length > 0) {
      if (adoption.sources.length > 1) {
        const keysBySource = await Promise.all(adoption.sources.map(async (_, index) => keysInSlots(await context.source(index), table, context.modulus, differing)));
        const seen = new Map<string, number>();
        for (const [index, keys] of keysBySource.entries()) {
          for (const key of keys) {
            const first = seen.get(key);
            if (first !== undefined) throw duplicateKeyError(key, [context.sourceName(first), context.sourceName(index)]);
            seen.set(key, index);
          }
        }
      }
      throw new ReshardError('verification_failed', `${differing.length} slot(s) of ${adoption.name} differ between the sources and the owners after the final sync (first: ${firstDifference}${sums.outcome === 'differ' ? `; row sums: ${sums.detail}` : ''})`,
        'the adoption was undone; run it again and report this if it repeats');
    }
    if (sums.outcome === 'differ') {
      throw new ReshardError('verification_failed', `the row sums of ${adoption.name} differ between the sources and the owners (${sums.detail}), although a scan finds every slot equal`,
        'the adoption was undone; run it again and report this if it repeats');
    }
    return { rows, verifiedBy: 'scan', scanBecause: sums.detail };
  },
};

const attach: AdoptStep = {
  name: 'attach',
  describe: () => 'on every node at once, one statement each: the old table (where a node holds it) renamed to its kept name, the staged parent (with its key log) renamed to the table\'s name',
  async do(context) {
    // Write pause: every node at once, one round trip each.
    await Promise.all(context.nodes.map(async (node) => switchNodeToAdoptedTable(await context.node(node.name), tableNames(context), context.adoption.keptName)));
  },
  async undo(context) {
    for (const node of context.nodes) await unswitchNode(await context.node(node.name), tableNames(context), context.adoption.keptName);
  },
};

const switchTable: AdoptStep = {
  name: 'switch',
  describe: () => 'catalog, one transaction: the table active, the adoption switched, epoch + 1, NOTIFY (the point of no return of the adoption; `reshard rollback` before `forget-source` still takes it back)',
  pointOfNoReturn: true,
  journalsBeginInStatement: true,
  async do(context, _slots, journal) {
    // Its begin (after the attach's done) is written by the switch's own statement: one commit less in the pause.
    return { epoch: await switchAdoptedTable(context.catalog, context.adoption.migrationId, journal) };
  },
};

const cleanup: AdoptStep = {
  name: 'cleanup',
  describe: () => 'drop the replication slot on each source (an orphaned slot pins WAL); on every node, the switched table\'s sequences confined to the node\'s block once more (as `assignSequenceRanges` does; positions kept); the old table stays, fenced, until `reshard table forget-source`',
  async do(context) {
    for (const [index] of context.adoption.sources.entries()) await dropChangeSlot(context, index);
    await confineSequencesEverywhere(context, context.adoption.name);
    // Last: ending an owner's sums locks its leaves one by one (DROP TRIGGER), and the calls the routers held through
    // the cutover reach those leaves right after the switch; the work above lets them land first.
    await untrackAdoptedRows(context);
  },
};

/**
 * Every node's copy of the table's sequences confined to the node's block,
 * each node in its own transaction (node/sequenceRange.ts; idempotent: a
 * sequence already in its block keeps its position). In a journaled step,
 * so a node down here fails the step and `reshard resume` finishes it.
 */
async function confineSequencesEverywhere(context: AdoptContext, tableName: string): Promise<void> {
  const blocks = await sequenceBlocks(context.catalog);
  for (const node of context.nodes) {
    const block = blocks.get(node.name);
    if (block === undefined) throw new ReshardError('precondition', `node ${node.name} has no sequence block in the catalog`, 'run `reshard init` to upgrade the catalog schema');
    const session = await context.node(node.name);
    await beginTransaction(session);
    try {
      await confineTableSequences(session, { schema: context.adoption.schema, name: tableName }, sequenceBlockRange(block));
      await commitTransaction(session);
    } catch (error) {
      await rollbackQuietly(session);
      throw error;
    }
  }
}

/** Every step of an adoption, in order. */
export const ADOPT_STEPS: readonly AdoptStep[] = [prepare, stream, freeze, sync, verify, attach, switchTable, cleanup];
/** What a failed adoption takes back: every step before the switch. */
export const ADOPT_UNDOABLE_STEPS: readonly AdoptStep[] = ADOPT_STEPS.slice(0, ADOPT_STEPS.indexOf(switchTable));
