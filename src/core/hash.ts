/**
 * A key's slot, computed exactly as PostgreSQL's hash partitioning routes the
 * row (research/feasibility.md, section D; src/backend/partitioning/partbounds.c
 * and src/common/hashfn.c):
 *
 *   1. each key column is hashed by its type's *extended* hash function with
 *      HASH_PARTITION_SEED (Bob Jenkins' lookup3, 64-bit result `b << 32 | c`);
 *   2. the column hashes are folded with `hash_combine64`, starting from 0;
 *   3. the slot is that row hash modulo M, unsigned: the partition's REMAINDER.
 *
 * The router calls this per key, so the common case runs on 32-bit integers
 * only: no BigInt, no allocation. A 64-bit value is a pair of uint32 words
 * (`hi`, `lo`) throughout. BigInt appears only when the caller passes one (or
 * an int8 string of more than 15 digits), asks for the raw hash, or uses a
 * modulus above MODULUS_EXACT_MAX.
 *
 * Text and uuid hash raw bytes, and PostgreSQL reads those bytes as words in
 * the server's byte order. This code matches little-endian servers (x86-64,
 * ARM64, ppc64le); a big-endian server (s390x) routes text and uuid keys
 * differently and is not supported.
 */
import { assert, assertNever } from './assert.js';
import { badInput } from './errors.js';

export type ShardKeyType = 'bigint' | 'integer' | 'text' | 'uuid';

export const SHARD_KEY_TYPES: readonly ShardKeyType[] = Object.freeze(['bigint', 'integer', 'text', 'uuid']);

/**
 * bigint and integer accept a JavaScript bigint, a safe-integer number or a
 * decimal string (node-postgres returns int8 as a string); text a string;
 * uuid a string in any form PostgreSQL's uuid_in accepts.
 */
export type ShardKeyValue = bigint | number | string;

/** `HASH_PARTITION_SEED` in partbounds.c: 0x7A5B22367996DCFD. */
export const HASH_PARTITION_SEED = 0x7a5b22367996dcfdn;
const SEED_HI = 0x7a5b2236;
const SEED_LO = 0x7996dcfd;
assert(((BigInt(SEED_HI) << 32n) | BigInt(SEED_LO)) === HASH_PARTITION_SEED, 'seed words are HASH_PARTITION_SEED');

/** `hash_combine64`'s constant 0x49a0f4dd15e5a8e3, as two words. */
const COMBINE_HI = 0x49a0f4dd;
const COMBINE_LO = 0x15e5a8e3;
const HASH_COMBINE64_CONSTANT = 0x49a0f4dd15e5a8e3n;
assert(((BigInt(COMBINE_HI) << 32n) | BigInt(COMBINE_LO)) === HASH_COMBINE64_CONSTANT, 'combine words are the hash_combine64 constant');

/** A partition's MODULUS is an int4 in PostgreSQL. */
export const SLOT_MODULUS_MAX = 0x7fff_ffff;
/** Up to here `(hi mod m) * 2^32 + lo` stays below 2^53, so number arithmetic is exact. */
const MODULUS_EXACT_MAX = 2 ** 21;

const TWO_POW_32 = 0x1_0000_0000;
const UUID_BYTES = 16;
/** A scratch buffer larger than this is not kept between calls, so one huge key does not pin memory. */
const SCRATCH_BYTES_KEPT_MAX = 64 * 1024;

// ---------------------------------------------------------------------------
// lookup3 (hashfn.c), on int32 locals: every `| 0` keeps a value in 32 bits,
// which is both lookup3's arithmetic (mod 2^32) and what V8 runs fastest.

/** The last hash computed, as two int32 words: `hashHigh << 32 | hashLow` (lookup3's b and c). */
let hashHigh = 0;
let hashLow = 0;

function rotate(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function wordAt(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24);
}

/** `hash_bytes_extended(bytes[0..length), HASH_PARTITION_SEED)`; the result goes to hashHigh and hashLow. */
function hashBytes(bytes: Uint8Array, length: number): void {
  assert(length >= 0 && length <= bytes.length, 'hashBytes reads only bytes that were written');
  let a = (0x9e3779b9 + length + 3923095) | 0;
  let b = a;
  let c = a;
  // The seed enters as a 12-byte block ahead of the data (high word, low
  // word, zero), so every turn of this loop mixes exactly one block.
  a = (a + SEED_HI) | 0;
  b = (b + SEED_LO) | 0;
  let offset = 0;
  for (;;) {
    a = (a - c) | 0; a ^= rotate(c, 4); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rotate(a, 6); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rotate(b, 8); b = (b + a) | 0;
    a = (a - c) | 0; a ^= rotate(c, 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rotate(a, 19); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rotate(b, 4); b = (b + a) | 0;
    if (length - offset < 12) break;
    a = (a + wordAt(bytes, offset)) | 0;
    b = (b + wordAt(bytes, offset + 4)) | 0;
    c = (c + wordAt(bytes, offset + 8)) | 0;
    offset += 12;
  }
  // The 0–11 byte tail, little-endian: bytes 0–3 into a, 4–7 into b, 8–10
  // into c one byte up, because lookup3 reserves c's lowest byte.
  for (let index = 0; offset + index < length; index++) {
    const byte = bytes[offset + index]!;
    if (index < 4) a = (a + (byte << (8 * index))) | 0;
    else if (index < 8) b = (b + (byte << (8 * (index - 4)))) | 0;
    else c = (c + (byte << (8 * (index - 7)))) | 0;
  }
  c ^= b; c = (c - rotate(b, 14)) | 0;
  a ^= c; a = (a - rotate(c, 11)) | 0;
  b ^= a; b = (b - rotate(a, 25)) | 0;
  c ^= b; c = (c - rotate(b, 16)) | 0;
  a ^= c; a = (a - rotate(c, 4)) | 0;
  b ^= a; b = (b - rotate(a, 14)) | 0;
  c ^= b; c = (c - rotate(b, 24)) | 0;
  hashHigh = b;
  hashLow = c;
}

const uint32Bytes = new Uint8Array(4);

/**
 * `hash_bytes_uint32_extended(k, HASH_PARTITION_SEED)`: by construction the
 * same as hashing k's four little-endian bytes, on every platform.
 */
function hashUint32(k: number): void {
  uint32Bytes[0] = k;
  uint32Bytes[1] = k >>> 8;
  uint32Bytes[2] = k >>> 16;
  uint32Bytes[3] = k >>> 24;
  hashBytes(uint32Bytes, 4);
}

// ---------------------------------------------------------------------------
// Values to the words or bytes PostgreSQL hashes. Each check costs a compare on
// the hot path, and each failure is the caller's input, so it is a badInput.

let scratch = new Uint8Array(256);

function scratchFor(bytesMax: number): Uint8Array {
  if (bytesMax <= scratch.length) return scratch;
  const grown = new Uint8Array(Math.max(bytesMax, 2 * scratch.length));
  if (grown.length <= SCRATCH_BYTES_KEPT_MAX) scratch = grown;
  return grown;
}

/** The value as an error message shows it: quoted if a string, cut at 60 characters. */
function describeValue(value: unknown): string {
  const shown = 60;
  if (typeof value === 'string') return value.length > shown ? `${JSON.stringify(value.slice(0, shown))}...` : JSON.stringify(value);
  return String(value);
}

function rejectNull(value: unknown, type: ShardKeyType): void {
  if (value === null || value === undefined) {
    throw badInput(`a ${type} shard key value is ${String(value)}`, 'give every shard key column a value; reshard does not route NULL keys');
  }
}

/**
 * Parses `[+-]?digits` into a number when it has at most 15 significant digits
 * (10^15 < 2^53, so exact); returns undefined for more, which the caller reads
 * as a BigInt.
 */
function parseDecimalSmall(text: string, type: ShardKeyType): number | undefined {
  const first = text.length > 0 ? text.charCodeAt(0) : 0;
  const negative = first === 0x2d;
  const start = negative || first === 0x2b ? 1 : 0;
  if (start === text.length) throw notDecimal(text, type);
  let result = 0;
  let significantDigits = 0;
  for (let index = start; index < text.length; index++) {
    const digit = text.charCodeAt(index) - 0x30;
    if (!(digit >= 0 && digit <= 9)) throw notDecimal(text, type);
    if (result !== 0 || digit !== 0) significantDigits++;
    result = result * 10 + digit;
  }
  if (significantDigits > 15) return undefined;
  return negative ? -result : result;
}

function notDecimal(text: string, type: ShardKeyType): Error {
  return badInput(
    `${type} shard key ${describeValue(text)} is not a decimal integer`,
    'pass a number, a bigint or a string of digits with an optional sign (no spaces, underscores or hex)',
  );
}

function outOfRange(value: ShardKeyValue, type: ShardKeyType, range: string): Error {
  return badInput(`${type} shard key ${describeValue(value)} is out of range ${range}`, `pass a value the column's type can hold`);
}

function wrongJsType(value: unknown, type: ShardKeyType, expected: string): Error {
  return badInput(`a ${type} shard key was given as ${typeof value} ${describeValue(value)}`, `pass ${expected}`);
}

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const INT8_RANGE = '[-9223372036854775808, 9223372036854775807]';
const INT4_MIN = -0x8000_0000;
const INT4_MAX = 0x7fff_ffff;
const INT4_RANGE = '[-2147483648, 2147483647]';

/** hashint8extended: fold the int64 to 32 bits so equal int4 and int8 values hash alike, then hash the word. */
function hashInt8(value: ShardKeyValue): void {
  let number: number | undefined;
  let big: bigint | undefined;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      if (Number.isInteger(value)) throw badInput(`bigint shard key ${value} is beyond 2^53 and not exact as a number`, 'pass it as a bigint or a decimal string');
      throw notDecimal(String(value), 'bigint');
    }
    number = value;
  } else if (typeof value === 'string') {
    number = parseDecimalSmall(value, 'bigint');
    if (number === undefined) big = BigInt(value);
  } else if (typeof value === 'bigint') {
    big = value;
  } else {
    rejectNull(value, 'bigint');
    throw wrongJsType(value, 'bigint', 'a bigint, a safe-integer number or a decimal string');
  }
  let lo: number;
  let hi: number;
  let nonNegative: boolean;
  if (big === undefined) {
    const n = number!;
    lo = n | 0; // ToInt32 is the low word of the two's complement, also for |n| >= 2^31
    hi = Math.floor(n / TWO_POW_32) | 0;
    nonNegative = n >= 0;
  } else {
    if (big < INT8_MIN || big > INT8_MAX) throw outOfRange(value, 'bigint', INT8_RANGE);
    lo = Number(BigInt.asIntN(32, big));
    hi = Number(BigInt.asIntN(32, big >> 32n));
    nonNegative = big >= 0n;
  }
  hashUint32(lo ^ (nonNegative ? hi : ~hi));
}

/** hashint4extended: the int4's bits as a uint32. */
function hashInt4(value: ShardKeyValue): void {
  let n: number;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw notDecimal(String(value), 'integer');
    n = value;
  } else if (typeof value === 'string') {
    n = parseDecimalSmall(value, 'integer') ?? Number.POSITIVE_INFINITY; // 16+ significant digits are out of range
  } else if (typeof value === 'bigint') {
    n = value < BigInt(INT4_MIN) || value > BigInt(INT4_MAX) ? Number.POSITIVE_INFINITY : Number(value);
  } else {
    rejectNull(value, 'integer');
    throw wrongJsType(value, 'integer', 'a number, a bigint or a decimal string');
  }
  if (n < INT4_MIN || n > INT4_MAX) throw outOfRange(value, 'integer', INT4_RANGE);
  hashUint32(n | 0);
}

/**
 * The UTF-8 bytes PostgreSQL stores for `text`, written into a scratch buffer.
 * A NUL or an unpaired surrogate cannot be stored as text (the driver would
 * fail or substitute U+FFFD), so it is rejected rather than hashed.
 */
function encodeUtf8(text: string, bytes: Uint8Array): number {
  let length = 0;
  for (let index = 0; index < text.length; index++) {
    const unit = text.charCodeAt(index);
    if (unit < 0x80) {
      if (unit === 0) throw badInput(`text shard key ${describeValue(text)} contains a NUL character`, 'remove it; PostgreSQL text cannot hold NUL');
      bytes[length++] = unit;
    } else if (unit < 0x800) {
      bytes[length++] = 0xc0 | (unit >> 6);
      bytes[length++] = 0x80 | (unit & 0x3f);
    } else if (unit < 0xd800 || unit > 0xdfff) {
      bytes[length++] = 0xe0 | (unit >> 12);
      bytes[length++] = 0x80 | ((unit >> 6) & 0x3f);
      bytes[length++] = 0x80 | (unit & 0x3f);
    } else {
      const low = index + 1 < text.length ? text.charCodeAt(index + 1) : 0;
      if (unit > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff)) {
        throw badInput(`text shard key ${describeValue(text)} contains an unpaired UTF-16 surrogate at index ${index}`, 'pass well-formed Unicode text');
      }
      const codePoint = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
      bytes[length++] = 0xf0 | (codePoint >> 18);
      bytes[length++] = 0x80 | ((codePoint >> 12) & 0x3f);
      bytes[length++] = 0x80 | ((codePoint >> 6) & 0x3f);
      bytes[length++] = 0x80 | (codePoint & 0x3f);
      index++;
    }
  }
  return length;
}

/** hashtextextended under a deterministic collation: the bytes of the string. */
function hashText(value: ShardKeyValue): void {
  if (typeof value !== 'string') {
    rejectNull(value, 'text');
    throw wrongJsType(value, 'text', 'a string');
  }
  const bytes = scratchFor(3 * value.length); // a UTF-16 unit is at most 3 UTF-8 bytes; a pair is 4 for 2 units
  hashBytes(bytes, encodeUtf8(value, bytes));
}

function hexValue(unit: number): number {
  if (unit >= 0x30 && unit <= 0x39) return unit - 0x30;
  const lower = unit | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

function notUuid(text: string): Error {
  return badInput(`uuid shard key ${describeValue(text)} is not a UUID`, 'pass 32 hex digits such as "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"');
}

/**
 * uuid_in's grammar (uuid.c, string_to_uuid): optional braces, 32 hex digits
 * in either case, and an optional hyphen after any group of four digits but
 * the last.
 */
function parseUuid(text: string, bytes: Uint8Array): void {
  // Every read is bounds-checked first: charCodeAt past the end deoptimises the function.
  const length = text.length;
  const braces = length > 0 && text.charCodeAt(0) === 0x7b;
  let index = braces ? 1 : 0;
  for (let byteIndex = 0; byteIndex < UUID_BYTES; byteIndex++) {
    if (index + 1 >= length) throw notUuid(text);
    const high = hexValue(text.charCodeAt(index));
    const low = hexValue(text.charCodeAt(index + 1));
    if (high < 0 || low < 0) throw notUuid(text);
    bytes[byteIndex] = (high << 4) | low;
    index += 2;
    if (byteIndex % 2 === 1 && byteIndex < UUID_BYTES - 1 && index < length && text.charCodeAt(index) === 0x2d) index++;
  }
  if (braces) {
    if (index >= length || text.charCodeAt(index) !== 0x7d) throw notUuid(text);
    index++;
  }
  if (index !== length) throw notUuid(text);
}

/** hash_uuid_extended: the 16 raw bytes. */
function hashUuid(value: ShardKeyValue): void {
  if (typeof value !== 'string') {
    rejectNull(value, 'uuid');
    throw wrongJsType(value, 'uuid', 'a string');
  }
  const bytes = scratchFor(UUID_BYTES);
  parseUuid(value, bytes);
  hashBytes(bytes, UUID_BYTES);
}

/** Hashes one column value; the result goes to hashHigh and hashLow. */
function hashColumn(type: ShardKeyType, value: ShardKeyValue): void {
  switch (type) {
    case 'bigint':
      return hashInt8(value);
    case 'integer':
      return hashInt4(value);
    case 'text':
      return hashText(value);
    case 'uuid':
      return hashUuid(value);
    default:
      return assertNever(type, 'unknown shard key type');
  }
}

// ---------------------------------------------------------------------------
// Row hash and slot.

function checkModulus(modulus: number): void {
  if (!Number.isInteger(modulus) || modulus < 1 || modulus > SLOT_MODULUS_MAX) {
    throw badInput(`slot count ${describeValue(modulus)} is not an integer in [1, ${SLOT_MODULUS_MAX}]`, 'use the slot count M the cluster was created with');
  }
}

/**
 * `x mod m` for integers 0 <= x < 2^53 by one division: the quotient rounds to
 * the right integer below 2^53, and a division is several times faster than
 * `%` on values beyond int32, which V8 hands to fmod.
 */
function modExact(x: number, m: number): number {
  return x - Math.floor(x / m) * m;
}

/** `(hi * 2^32 + lo) mod modulus` of two uint32 words, as PostgreSQL's `rowHash % nindexes`. */
function remainder(hi: number, lo: number, modulus: number): number {
  let slot: number;
  if ((modulus & (modulus - 1)) === 0) slot = lo & (modulus - 1);
  else if (modulus <= MODULUS_EXACT_MAX) slot = modExact(modExact(hi, modulus) * TWO_POW_32 + lo, modulus);
  else slot = Number(((BigInt(hi) << 32n) | BigInt(lo)) % BigInt(modulus));
  assert(slot >= 0 && slot < modulus && Number.isInteger(slot), 'a slot is an integer in [0, M)');
  return slot;
}

/** PostgreSQL's `<type>extended(value, HASH_PARTITION_SEED)`, as an unsigned 64-bit integer. */
export function hashShardKeyValue(type: ShardKeyType, value: ShardKeyValue): bigint {
  hashColumn(type, value);
  return (BigInt(hashHigh >>> 0) << 32n) | BigInt(hashLow >>> 0);
}

/** `hash_combine64(a, b)`: `a ^ (b + 0x49a0f4dd15e5a8e3 + (a << 54) + (a >> 7))` mod 2^64. */
export function hashCombine64(a: bigint, b: bigint): bigint {
  const mask = 0xffff_ffff_ffff_ffffn;
  return (a ^ ((b + HASH_COMBINE64_CONSTANT + (a << 54n) + (a >> 7n)) & mask)) & mask;
}

/**
 * The slot of a composite key with `modulus` slots: the REMAINDER of the
 * partition PostgreSQL routes the row to, for a table partitioned by hash on
 * these columns in this order.
 */
export function slotOfKey(types: readonly ShardKeyType[], values: readonly ShardKeyValue[], modulus: number): number {
  checkModulus(modulus);
  if (types.length === 0) throw badInput('a shard key with no columns was given', 'name at least one shard key column');
  if (values.length !== types.length) {
    throw badInput(`the shard key has ${types.length} column(s) but ${values.length} value(s) were given`, 'pass one value per shard key column, in key order');
  }
  // hash_combine64 on word pairs; the row hash starts at 0.
  let rowHi = 0;
  let rowLo = 0;
  for (let column = 0; column < types.length; column++) {
    hashColumn(types[column]!, values[column]!);
    const hashHi = hashHigh >>> 0;
    const hashLo = hashLow >>> 0;
    // b + constant + (a << 54) + (a >> 7), summed exactly as doubles: the low
    // words stay below 2^34 and carry into the high word; `^` and `>>>` wrap mod 2^32.
    const lowSum = hashLo + COMBINE_LO + (((rowLo >>> 7) | (rowHi << 25)) >>> 0);
    const carry = Math.floor(lowSum / TWO_POW_32);
    const highSum = hashHi + COMBINE_HI + ((rowLo << 22) >>> 0) + (rowHi >>> 7) + carry;
    rowLo = (rowLo ^ lowSum) >>> 0;
    rowHi = (rowHi ^ highSum) >>> 0;
  }
  return remainder(rowHi, rowLo, modulus);
}

/**
 * The slot of a one-column key with `modulus` slots. With one column the row
 * hash is `hash + 0x49a0f4dd15e5a8e3`, so a power-of-two modulus needs only
 * the low word.
 */
export function slotOf(type: ShardKeyType, value: ShardKeyValue, modulus: number): number {
  checkModulus(modulus);
  hashColumn(type, value);
  const lowSum = (hashLow >>> 0) + COMBINE_LO;
  // A power-of-two modulus reads only the low word, so the high word is not summed.
  const rowHi = (modulus & (modulus - 1)) === 0 ? 0 : ((hashHigh >>> 0) + COMBINE_HI + Math.floor(lowSum / TWO_POW_32)) >>> 0;
  return remainder(rowHi, lowSum >>> 0, modulus);
}

/**
 * The ShardKeyType for a PostgreSQL type name as format_type() or pg_type.typname
 * spell it, or undefined when reshard cannot route that type. Other types
 * (varchar, smallint, numeric, …) stay out until a test against a server proves
 * their hashing here.
 */
export function shardKeyTypeFromPostgres(typeName: string): ShardKeyType | undefined {
  switch (typeName.trim().toLowerCase()) {
    case 'bigint':
    case 'int8':
      return 'bigint';
    case 'integer':
    case 'int4':
    case 'int':
      return 'integer';
    case 'text':
      return 'text';
    case 'uuid':
      return 'uuid';
    default:
      return undefined;
  }
}
