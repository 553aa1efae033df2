import { ReshardError } from '../core/errors.js';
import { slotOf, type ShardKeyValue } from '../core/hash.js';
import { decodeChangeLine, decodedTablePrefix } from '../core/testDecoding.js';
import { advanceChangeSlot, peekChanges, rowsByKey } from '../node/adoptSource.js';
import { replaceRowsByKey } from '../node/adoptTarget.js';
import { currentWalLsn } from '../node/replication.js';
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
    if (holders.length === 1) batch.rows.push(found[holders[0]!]!.get(key));
  }
  const parent = { schema: adoption.schema, name: into === 'staged' ? adoption.stagedName : adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
  await Promise.all([...byOwner].map(async ([owner, batch]) => replaceRowsByKey(await context.node(owner), parent, batch.keys, batch.rows)));
  return keys.length;
}

/**
 * Applies what each source's change stream holds up to `uptoLsn` (per
 * source; its current WAL position when absent), then moves the stream on.
 * A crash before the move replays the same changes, which land the same.
 * Returns the keys refreshed.
 */
export async function applyChanges(context: AdoptContext, uptoLsn: ReadonlyMap<number, string> = new Map(), keysPerBatchMax = 20_000): Promise<number> {
  const { adoption } = context;
  const prefix = decodedTablePrefix(adoption.schema, adoption.name);
  let applied = 0;
  for (const [index] of adoption.sources.entries()) {
    const source = await context.source(index);
    const upto = uptoLsn.get(index) ?? await currentWalLsn(source);
    const lines = await peekChanges(source, context.names.slotName(index), upto);
    const keys = new Set<string>();
    for (const line of lines) {
      let change;
      try {
        change = decodeChangeLine(line, prefix, adoption.keyColumn);
      } catch (error) {
        throw new ReshardError('unsupported', `a change of ${adoption.name} on ${context.sourceName(index)} could not be read: ${(error as Error).message}`,
          'give the table a primary key that includes the key column (its replica identity)');
      }
      if (change?.kind === 'TRUNCATE') {
        throw new ReshardError('unsupported', `${adoption.name} was truncated on ${context.sourceName(index)} during its adoption`, 'run `reshard rollback` and adopt it again');
      }
      for (const key of change?.keys ?? []) keys.add(key);
    }
    const all = [...keys];
    for (let at = 0; at < all.length; at += keysPerBatchMax) {
      applied += await refreshKeys(context, all.slice(at, at + keysPerBatchMax), 'staged');
    }
    await advanceChangeSlot(source, context.names.slotName(index), upto);
  }
  return applied;
}
