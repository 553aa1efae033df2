import { ReshardError } from '../core/errors.js';
import type { SequenceRange } from '../core/sequenceBlock.js';
import type { Queryable } from '../plumbing/queryable.js';
import { describeTable, type SequenceFeed } from './tableDescription.js';

/** A sequence as it stands on one node. */
export interface SequenceState {
  sequence: string;
  column: string;
  min: bigint;
  max: bigint;
  /** The next value nextval() returns. */
  next: bigint;
}

/**
 * Confines every sequence that feeds a column of the table on this node
 * to `range` (MINVALUE, MAXVALUE, no cycle): nextval() then returns only
 * values of the node's own block, and fails at its end instead of entering a
 * neighbour's. A sequence already in the range keeps its position (idempotent,
 * never handed a value twice); one elsewhere starts at the range's first value.
 * Only bigint sequences of bigint columns can be confined. In the caller's
 * transaction (ALTER SEQUENCE is transactional).
 */
export async function confineTableSequences(db: Queryable, table: { schema: string; name: string }, range: SequenceRange): Promise<SequenceState[]> {
  const described = await describeTable(db, table.schema, table.name);
  if (!described) throw new ReshardError('precondition', `table ${table.schema}.${table.name} is missing on a node`, 'run `reshard doctor` to find the drift');
  const states: SequenceState[] = [];
  for (const feed of described.sequences) {
    const column = described.columns.find((entry) => entry.name === feed.column);
    if (feed.sequenceType !== 'bigint' || column?.type !== 'bigint') {
      throw new ReshardError('unsupported',
        `column "${feed.column}" of ${table.name} is ${column?.type ?? '?'}, fed by sequence ${feed.sequence} (${feed.sequenceType}): every node draws its keys from its own block of 2^48 values, which only bigint holds`,
        `make it bigint: bigserial instead of serial, or GENERATED … AS IDENTITY on a bigint column`);
    }
    states.push(await confineSequence(db, feed, range));
  }
  return states;
}

async function confineSequence(db: Queryable, feed: SequenceFeed, range: SequenceRange): Promise<SequenceState> {
  const now = await readSequence(db, feed);
  const { cycles, ...state } = now;
  if (state.min === range.min && state.max === range.max && !cycles) return state;
  // Kept where it is only if it already stands inside the block; else from the block's start.
  const next = now.next >= range.min && now.next <= range.max ? now.next : range.min;
  // feed.sequence was quoted by format('%I.%I') in the catalog read.
  await db.query(`ALTER SEQUENCE ${feed.sequence} NO CYCLE MINVALUE ${range.min} MAXVALUE ${range.max} START WITH ${range.min} RESTART WITH ${next}`);
  return { sequence: feed.sequence, column: feed.column, min: range.min, max: range.max, next };
}

async function readSequence(db: Queryable, feed: SequenceFeed): Promise<SequenceState & { cycles: boolean }> {
  const bounds = await db.query<{ min: string; max: string; cycles: boolean }>(
    'SELECT seqmin::text AS min, seqmax::text AS max, seqcycle AS cycles FROM pg_sequence WHERE seqrelid = $1::regclass', [feed.sequence]);
  const position = await db.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM ${feed.sequence}`);
  const { min, max, cycles } = bounds.rows[0]!;
  const { last_value: lastValue, is_called: called } = position.rows[0]!;
  return { sequence: feed.sequence, column: feed.column, min: BigInt(min), max: BigInt(max), next: called ? BigInt(lastValue) + 1n : BigInt(lastValue), cycles };
}

/** The sequences feeding the table's columns on this node, with their bounds and next value. */
export async function tableSequenceStates(db: Queryable, table: { schema: string; name: string }): Promise<SequenceState[]> {
  const described = await describeTable(db, table.schema, table.name);
  if (!described) return [];
  const states: SequenceState[] = [];
  for (const feed of described.sequences) {
    const { cycles: _cycles, ...state } = await readSequence(db, feed);
    states.push(state);
  }
  return states;
}
