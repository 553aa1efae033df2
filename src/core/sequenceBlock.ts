import { assert } from './assert.js';

/**
 * Keys from sequences stay unique across nodes because every node draws from
 * its own block of bigint (README "Keys from sequences"): block b holds
 * [b · 2^48, (b + 1) · 2^48 − 1]. Block 0 — every value below 2^48 — is
 * never handed to a node: it is what a table had before reshard (a source's
 * sequence), so adopted rows never meet a node's new keys. Blocks are never
 * reused, not even by a node added again under the same name: its old keys
 * may still live on other nodes.
 */
export const SEQUENCE_BLOCK_BITS = 48;
export const SEQUENCE_BLOCK_VALUES = 1n << BigInt(SEQUENCE_BLOCK_BITS);
/** 2^63 / 2^48 blocks fit in bigint; block 0 is kept for values from before reshard. */
export const SEQUENCE_BLOCK_MAX = 2 ** (63 - SEQUENCE_BLOCK_BITS) - 1;

export interface SequenceRange {
  /** The block's first value (the sequence's MINVALUE and START). */
  min: bigint;
  /** Its last value (MAXVALUE); nextval past it fails rather than wrapping into a neighbour's block. */
  max: bigint;
}

export function sequenceBlockRange(block: number): SequenceRange {
  assert(Number.isInteger(block) && block >= 1 && block <= SEQUENCE_BLOCK_MAX, 'a sequence block is an integer in [1, 32767]');
  const min = BigInt(block) * SEQUENCE_BLOCK_VALUES;
  return { min, max: min + SEQUENCE_BLOCK_VALUES - 1n };
}
