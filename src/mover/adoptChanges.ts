import { ReshardError } from '../core/errors.js';
import { slotOf, type ShardKeyValue } from '../core/hash.js';
import { decodeChangeLine, decodedTablePrefix } from '../core/testDecoding.js';
import { randomUUID } from 'node:crypto';
import { ADOPT_MARKER_PREFIX, canLogRunningTransactions, emitMarker, logRunningTransactions, rowsByKey } from '../node/adoptSource.js';
import { replaceRowsByKey } from '../node/adoptTarget.js';
import type { AdoptContext } from './adoptContext.js';

/** A key's text form as the hash takes it. */
export function keyValueOf(context: Pick<AdoptContext, 'adoption'>, key: string): ShardKeyValue {
  switch (context.adoption.keyType) {
    case 'bigint': return BigInt(key);
    case 'integer': return Number(key);
    default: return key;
  }
}

export function duplicateKeyError(key: string, sources: readonly string[]): ReshardError {
  return new ReshardError('conflict', `key ${key} is on more than one source (${sources.join(', ')}): a sharded table holds each key once`,
    'remove or renumber the duplicate rows on the sources, then run `reshard table adopt` again (nothing was switched; the adoption was undone)');
}

/**
 * Makes every owner hold, for each key of `keys`, exactly the row the
 * sources hold now (or none): the rows are read from every source at once,
 * so a key that moved from one source to another (the application's own
 * resharding) lands once, and a key held by two sources is an error.
 */
export async function refreshKeys(context: AdoptContext, keys: readonly string[], into: 'staged' | 'final'): Promise<number> {
  if (keys.length === 0) return 0;
  const { adoption } = context;
  const table = { schema: adoption.schema, name: adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
  const found = await Promise.all(adoption.sources.map(async (_, index) => rowsByKey(await context.source(index), table, keys)));
  const byOwner = new Map<string, { keys: string[]; rows: unknown[] }>();
  for (const key of keys) {
    const holders = found.flatMap((rows, index) => (rows.has(key) ? [index] : []));
    if (holders.length > 1) throw duplicateKeyError(key, holders.map((index) => context.sourceName(index)));
    const owner = context.owners[slotOf(adoption.keyType, keyValueOf(context, key), context.modulus)]!;
    let batch = byOwner.get(owner);
    if (!batch) byOwner.set(owner, batch = { keys: [], rows: [] });
    batch.keys.push(key);
    if (holders.length === 1) batch.rows.push(...found[holders[0]!]!.get(key)!);
  }
  const parent = { schema: adoption.schema, name: into === 'staged' ? adoption.stagedName : adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
  await Promise.all([...byOwner].map(async ([owner, batch]) => replaceRowsByKey(await context.node(owner), parent, batch.keys, batch.rows)));
  return keys.length;
}

/** Lines one read of a stream takes at most (the keys of each read are refreshed together). */
const CHANGES_PER_READ = 50_000;
/** Longest one read waits for a first line (then it comes back empty, and the deadline is looked at). */
const READ_WAIT_MS = 100;
/** Longest one source's stream may take to show a marker just written. */
const MARKER_WAIT_MS = 120_000;
/** Keys refreshed per batch at most (one read of every source, one statement per owner). */
const KEYS_PER_BATCH_MAX = 20_000;

async function refreshInBatches(context: AdoptContext, keys: readonly string[]): Promise<number> {
  let applied = 0;
  for (let at = 0; at < keys.length; at += KEYS_PER_BATCH_MAX) applied += await refreshKeys(context, keys.slice(at, at + KEYS_PER_BATCH_MAX), 'staged');
  return applied;
}

/**
 * Reads source `index`'s change stream up to `marker`, a read at a time: the
 * keys of each read are refreshed and the stream confirmed past its last
 * COMMIT (a crash in between reads them again, and they land the same) —
 * except, where `keepLastRead`, those of the read that shows the marker: they
 * are handed back unrefreshed and unconfirmed (the final sync refreshes every
 * source's last keys at once; its slot is dropped at cleanup). A read that
 * fails, or keeps its keys, ends the stream: the next one opened reads from
 * the last confirmed COMMIT again.
 */
async function readStreamToMarker(context: AdoptContext, index: number, marker: string, keepLastRead: boolean): Promise<{ applied: number; lastKeys: string[] }> {
  const { adoption } = context;
  const prefixes = decodedTablePrefix(adoption.schema, adoption.name);
  const deadline = performance.now() + MARKER_WAIT_MS;
  let applied = 0;
  try {
    const stream = await context.changeStream(index);
    for (;;) {
      const lines = await stream.take(CHANGES_PER_READ, READ_WAIT_MS);
      const keys = new Set<string>();
      let lastCommitLsn: string | undefined;
      let seen = false;
      for (const line of lines) {
        if (line.data.startsWith('COMMIT')) lastCommitLsn = line.lsn;
        else if (line.data.startsWith('message:') && line.data.includes(ADOPT_MARKER_PREFIX) && line.data.endsWith(`content:${marker}`)) seen = true;
        else for (const key of changedKeysOf(context, index, line.data, prefixes)) keys.add(key);
      }
      if (seen && keepLastRead) {
        await context.closeChangeStream(index);
        return { applied, lastKeys: [...keys] };
      }
      applied += await refreshInBatches(context, [...keys]);
      if (lastCommitLsn !== undefined) stream.confirm(lastCommitLsn);
      if (seen) return { applied, lastKeys: [] };
      if (performance.now() > deadline) {
        throw new ReshardError('timeout', `the change stream of ${context.sourceName(index)} did not reach its marker within ${MARKER_WAIT_MS} ms`, 'check the source\'s logs; then `reshard resume`');
      }
    }
  } catch (error) {
    await context.closeChangeStream(index);
    throw error;
  }
}

function newMarker(context: AdoptContext): string {
  return `m${context.adoption.migrationId}-${randomUUID()}`;
}

/**
 * Applies every change each source's stream holds up to a marker written
 * into the source's WAL now — so every transaction committed before this
 * call — moving each stream on as its changes land. For the catch-up, while
 * the sources take writes. Returns the keys refreshed.
 */
export async function applyChanges(context: AdoptContext): Promise<number> {
  let applied = 0;
  for (const [index] of context.adoption.sources.entries()) {
    const marker = newMarker(context);
    const source = await context.source(index);
    // Before the marker: this round's read moves the slot past it, and its restart point with it (less WAL kept, and a
    // stream opened again after a resume decodes less).
    let logs = context.logsRunningTransactions.get(index);
    if (logs === undefined) context.logsRunningTransactions.set(index, logs = await canLogRunningTransactions(source));
    if (logs) await logRunningTransactions(source);
    await emitMarker(source, marker);
    applied += (await readStreamToMarker(context, index, marker, false)).applied;
  }
  return applied;
}

/**
 * The final sync, every source fenced: each source's stream read at once up
 * to the marker its fence wrote (a fresh marker where this run did not fence
 * it: after a resume), then the last keys of all of them refreshed together
 * (one read of every source, one statement per owner). The sources take no
 * writes any more, so reading them in any order gives the same rows.
 * Returns the keys refreshed, and how long the streams' reading and the last
 * keys' refresh took (both are write pause).
 */
export async function applyFinalChanges(context: AdoptContext): Promise<{ keys: number; streamsReadMs: number; lastKeysMs: number }> {
  const startedMs = performance.now();
  const read = await Promise.all(context.adoption.sources.map(async (_, index) => {
    let marker = context.fences.get(index)?.marker;
    if (marker === undefined) {
      marker = newMarker(context);
      await emitMarker(await context.source(index), marker);
    }
    return readStreamToMarker(context, index, marker, true);
  }));
  const lastKeys = [...new Set(read.flatMap((source) => source.lastKeys))];
  const readMs = performance.now();
  const keys = read.reduce((sum, source) => sum + source.applied, 0) + await refreshInBatches(context, lastKeys);
  return { keys, streamsReadMs: Math.round(readMs - startedMs), lastKeysMs: Math.round(performance.now() - readMs) };
}

function changedKeysOf(context: AdoptContext, index: number, line: string, prefixes: readonly string[]): string[] {
  let change;
  try {
    change = decodeChangeLine(line, prefixes, context.adoption.keyColumn);
  } catch (error) {
    throw new ReshardError('unsupported', `a change of ${context.adoption.name} on ${context.sourceName(index)} could not be read: ${(error as Error).message}`,
      'give the table a primary key that includes the key column (its replica identity)');
  }
  if (change?.kind === 'TRUNCATE') {
    throw new ReshardError('unsupported', `${context.adoption.name} was truncated on ${context.sourceName(index)} during its adoption`, 'run `reshard rollback` and adopt it again');
  }
  return change?.keys ?? [];
}
