import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReshardError } from '../../src/core/errors.js';
import {
  HASH_PARTITION_SEED,
  SHARD_KEY_TYPES,
  SLOT_MODULUS_MAX,
  hashCombine64,
  hashShardKeyValue,
  shardKeyTypeFromPostgres,
  slotOf,
  slotOfKey,
  type ShardKeyType,
  type ShardKeyValue,
} from '../../src/core/hash.js';

// ---------------------------------------------------------------------------
// A reference: lookup3, the int8 fold, hash_combine64 and the modulus written
// the slow, obvious way in BigInt, straight from hashfn.c and partbounds.c.
// The fast code in src/core/hash.ts must agree with it everywhere.

const U32 = 0xffff_ffffn;
const U64 = 0xffff_ffff_ffff_ffffn;

interface State {
  a: bigint;
  b: bigint;
  c: bigint;
}

function rot(x: bigint, k: number): bigint {
  return ((x << BigInt(k)) | (x >> BigInt(32 - k))) & U32;
}

function referenceMix(s: State): void {
  s.a = (s.a - s.c) & U32; s.a ^= rot(s.c, 4); s.c = (s.c + s.b) & U32;
  s.b = (s.b - s.a) & U32; s.b ^= rot(s.a, 6); s.a = (s.a + s.c) & U32;
  s.c = (s.c - s.b) & U32; s.c ^= rot(s.b, 8); s.b = (s.b + s.a) & U32;
  s.a = (s.a - s.c) & U32; s.a ^= rot(s.c, 16); s.c = (s.c + s.b) & U32;
  s.b = (s.b - s.a) & U32; s.b ^= rot(s.a, 19); s.a = (s.a + s.c) & U32;
  s.c = (s.c - s.b) & U32; s.c ^= rot(s.b, 4); s.b = (s.b + s.a) & U32;
}

function referenceFinal(s: State): void {
  s.c ^= s.b; s.c = (s.c - rot(s.b, 14)) & U32;
  s.a ^= s.c; s.a = (s.a - rot(s.c, 11)) & U32;
  s.b ^= s.a; s.b = (s.b - rot(s.a, 25)) & U32;
  s.c ^= s.b; s.c = (s.c - rot(s.b, 16)) & U32;
  s.a ^= s.c; s.a = (s.a - rot(s.c, 4)) & U32;
  s.b ^= s.a; s.b = (s.b - rot(s.a, 14)) & U32;
  s.c ^= s.b; s.c = (s.c - rot(s.b, 24)) & U32;
}

function referenceHashBytes(k: Uint8Array): bigint {
  const initial = (0x9e3779b9n + BigInt(k.length) + 3923095n) & U32;
  const s: State = { a: initial, b: initial, c: initial };
  s.a = (s.a + (HASH_PARTITION_SEED >> 32n)) & U32;
  s.b = (s.b + (HASH_PARTITION_SEED & U32)) & U32;
  referenceMix(s);
  const word = (i: number): bigint => BigInt(k[i]! | (k[i + 1]! << 8) | (k[i + 2]! << 16)) | (BigInt(k[i + 3]!) << 24n);
  let len = k.length;
  let i = 0;
  while (len >= 12) {
    s.a = (s.a + word(i)) & U32;
    s.b = (s.b + word(i + 4)) & U32;
    s.c = (s.c + word(i + 8)) & U32;
    referenceMix(s);
    i += 12;
    len -= 12;
  }
  const byte = (j: number): bigint => BigInt(k[i + j]!);
  // The tail switch of hash_bytes_extended (little-endian), its fall-through cases
  // unrolled: c's lowest byte stays free, so bytes 8-10 go in one byte up.
  if (len >= 8) {
    s.a += word(i);
    s.b += word(i + 4);
    for (let j = 8; j < len; j++) s.c += byte(j) << BigInt(8 * (j - 7));
  } else if (len >= 4) {
    s.a += word(i);
    for (let j = 4; j < len; j++) s.b += byte(j) << BigInt(8 * (j - 4));
  } else {
    for (let j = 0; j < len; j++) s.a += byte(j) << BigInt(8 * j);
  }
  s.a &= U32;
  s.b &= U32;
  s.c &= U32;
  referenceFinal(s);
  return (s.b << 32n) | s.c;
}

function uint32Bytes(k: bigint): Uint8Array {
  return Uint8Array.from([0, 8, 16, 24].map((shift) => Number((k >> BigInt(shift)) & 0xffn)));
}

function referenceHash(type: ShardKeyType, value: ShardKeyValue): bigint {
  switch (type) {
    case 'bigint': {
      const v = BigInt(value);
      const lo = v & U32;
      const hi = (v >> 32n) & U32;
      return referenceHashBytes(uint32Bytes(lo ^ (v >= 0n ? hi : ~hi & U32)));
    }
    case 'integer':
      return referenceHashBytes(uint32Bytes(BigInt(value) & U32));
    case 'text':
      return referenceHashBytes(Buffer.from(String(value), 'utf8'));
    case 'uuid':
      return referenceHashBytes(Buffer.from(String(value).replace(/[{}-]/g, ''), 'hex'));
  }
}

function referenceCombine(a: bigint, b: bigint): bigint {
  return (a ^ ((b + 0x49a0f4dd15e5a8e3n + ((a << 54n) & U64) + (a >> 7n)) & U64)) & U64;
}

function referenceSlot(types: readonly ShardKeyType[], values: readonly ShardKeyValue[], modulus: number): number {
  let row = 0n;
  types.forEach((type, index) => {
    row = referenceCombine(row, referenceHash(type, values[index]!));
  });
  return Number(row % BigInt(modulus));
}

// ---------------------------------------------------------------------------
// Arbitraries: values in the JavaScript forms reshard accepts.

const int8 = fc.oneof(
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.integer({ min: 1, max: 64 }).chain((bits) => fc.bigInt({ min: -(2n ** BigInt(bits - 1)), max: 2n ** BigInt(bits - 1) - 1n })),
  fc.constantFrom(0n, 1n, -1n, -(2n ** 63n), 2n ** 63n - 1n, 2n ** 32n, -(2n ** 32n), 2n ** 53n, -(2n ** 53n)),
);
const int4 = fc.oneof(fc.integer(), fc.integer({ min: -1000, max: 1000 }), fc.constantFrom(0, -1, 2 ** 31 - 1, -(2 ** 31)));
const text = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replaceAll('\u0000', '')),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 100, maxLength: 400 }).map((s) => s.replaceAll('\u0000', '')),
);
const uuidHex = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) => Buffer.from(bytes).toString('hex'));

function uuidForms(hex: string): string[] {
  const dashed = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return [dashed, dashed.toUpperCase(), hex, `{${dashed}}`, hex.match(/.{4}/g)!.join('-'), `{${hex}}`];
}

const keyColumn: fc.Arbitrary<{ type: ShardKeyType; value: ShardKeyValue }> = fc.oneof(
  int8.map((value) => ({ type: 'bigint' as const, value })),
  int4.map((value) => ({ type: 'integer' as const, value })),
  text.map((value) => ({ type: 'text' as const, value })),
  uuidHex.map((value) => ({ type: 'uuid' as const, value: uuidForms(value)[0]! })),
);

const modulus = fc.oneof(
  fc.integer({ min: 0, max: 30 }).map((bits) => 2 ** bits), // powers of two: the low-word fast path
  fc.integer({ min: 1, max: 5000 }), // typical slot counts
  fc.integer({ min: 1, max: 2 ** 21 }), // number arithmetic for the high word
  fc.integer({ min: 2 ** 21 + 1, max: SLOT_MODULUS_MAX }), // BigInt fallback
);

// ---------------------------------------------------------------------------

describe('hashShardKeyValue', () => {
  // Values read from PostgreSQL 15: SELECT <fn>(value, 8816678312871386365).
  const postgresVectors: [ShardKeyType, string, bigint][] = [
    ['bigint', '0', 0xc2e34bda39f0f0cdn],
    ['bigint', '1', 0x52d621058124e6d5n],
    ['bigint', '-1', 0xba5fc748095606c2n],
    ['bigint', '2147483647', 0xac09237e4899f89cn],
    ['bigint', '-2147483648', 0x44893a0f1e949193n],
    ['bigint', '9223372036854775807', 0x44893a0f1e949193n],
    ['bigint', '-9223372036854775808', 0xac09237e4899f89cn],
    ['bigint', '4294967296', 0x52d621058124e6d5n],
    ['bigint', '123456789012345', 0x1147cdfb1e213c4bn],
    ['integer', '0', 0xc2e34bda39f0f0cdn],
    ['integer', '1', 0x52d621058124e6d5n],
    ['integer', '-1', 0xba5fc748095606c2n],
    ['integer', '2147483647', 0xac09237e4899f89cn],
    ['integer', '-2147483648', 0x44893a0f1e949193n],
    ['text', '', 0xb0e33d0b543fbfc3n],
    ['text', 'a', 0xa2f240f8823ba67bn],
    ['text', 'abc', 0x325c02d16f43e1c2n],
    ['text', 'hello world!', 0xe5d29fdb5cc667f9n],
    ['text', 'hello world!!', 0x6783544a443196a0n],
    ['text', 'ä', 0xfca61cbbdd37834cn],
    ['text', '€', 0x8c9988d7c4690d3en],
    ['text', '中文', 0x33adb9f43eec178bn],
    ['text', '😀', 0x0262b3261273c08en],
    ['text', 'xxxxxxxxxxx', 0x6370173d49e4b0b0n],
    ['text', 'xxxxxxxxxxxxxxxxxxxxxxxx', 0x376f4ecc2dd94b28n],
    ['uuid', '00000000-0000-0000-0000-000000000000', 0xb6b5d3c4aa5d92c2n],
    ['uuid', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 0xfdeeb1999c98549en],
    ['uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0x05e42c7f7f75bcedn],
  ];

  it.each(postgresVectors)('%s %j hashes as PostgreSQL does', (type, value, expected) => {
    expect(hashShardKeyValue(type, value)).toBe(expected);
    expect(referenceHash(type, value)).toBe(expected);
  });

  it('equals the BigInt reference for every type', () => {
    fc.assert(
      fc.property(keyColumn, ({ type, value }) => {
        expect(hashShardKeyValue(type, value)).toBe(referenceHash(type, value));
      }),
      { numRuns: 5000 },
    );
  });

  it('is a uint64', () => {
    fc.assert(
      fc.property(keyColumn, ({ type, value }) => {
        const hash = hashShardKeyValue(type, value);
        expect(hash >= 0n && hash <= U64).toBe(true);
      }),
    );
  });

  it('hashes text longer than the kept scratch buffer, and short text after it', () => {
    const long = '€'.repeat(40_000); // 120,000 UTF-8 bytes
    expect(hashShardKeyValue('text', long)).toBe(referenceHash('text', long));
    expect(hashShardKeyValue('text', 'a')).toBe(0xa2f240f8823ba67bn);
  });

  it('gives the same hash for a bigint key passed as bigint, number or string', () => {
    fc.assert(
      fc.property(int8, (big) => {
        const hash = hashShardKeyValue('bigint', big);
        expect(hashShardKeyValue('bigint', big.toString())).toBe(hash);
        if (big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)) {
          expect(hashShardKeyValue('bigint', Number(big))).toBe(hash);
        }
      }),
      { numRuns: 2000 },
    );
    expect(hashShardKeyValue('bigint', '+42')).toBe(hashShardKeyValue('bigint', 42));
    expect(hashShardKeyValue('bigint', '-0')).toBe(hashShardKeyValue('bigint', 0));
    expect(hashShardKeyValue('bigint', '000000000000000000042')).toBe(hashShardKeyValue('bigint', 42));
    expect(hashShardKeyValue('integer', '000000000000000000042')).toBe(hashShardKeyValue('integer', 42n));
    expect(hashShardKeyValue('integer', '-2147483648')).toBe(hashShardKeyValue('integer', -(2 ** 31)));
  });

  it('gives the same hash for every spelling of a uuid that uuid_in accepts', () => {
    fc.assert(
      fc.property(uuidHex, (hex) => {
        const hashes = new Set(uuidForms(hex).map((form) => hashShardKeyValue('uuid', form)));
        expect(hashes.size).toBe(1);
      }),
    );
  });

  it('int4 and int8 hash alike on the int4 range, as hashint8extended folds to 32 bits', () => {
    fc.assert(
      fc.property(int4, (n) => {
        expect(hashShardKeyValue('integer', n)).toBe(hashShardKeyValue('bigint', n));
      }),
      { numRuns: 5000 },
    );
  });

  it('int8 values outside the int4 range do not, in general, hash like their low 32 bits', () => {
    // The fold is lo ^ hi (or lo ^ ~hi): 2^32 collides with 1, not with 0.
    expect(hashShardKeyValue('bigint', 2n ** 32n)).toBe(hashShardKeyValue('integer', 1));
    expect(hashShardKeyValue('bigint', 2n ** 32n)).not.toBe(hashShardKeyValue('integer', 0));
    expect(hashShardKeyValue('bigint', 2n ** 63n - 1n)).toBe(hashShardKeyValue('integer', -(2 ** 31)));
  });
});

describe('slotOf and slotOfKey', () => {
  // Partitions PostgreSQL 15 routes these keys to (satisfies_hash_partition).
  it.each([
    ['bigint', 42, 1024, 610],
    ['bigint', 42, 1000, 514],
    ['text', 'alice', 1024, 981],
    ['text', 'alice', 100, 33],
  ] as const)('%s %j with M=%i is slot %i', (type, value, slotCount, expected) => {
    expect(slotOf(type, value, slotCount)).toBe(expected);
  });

  it('a single-column slot equals the BigInt reference for every modulus', () => {
    fc.assert(
      fc.property(keyColumn, modulus, ({ type, value }, slotCount) => {
        expect(slotOf(type, value, slotCount)).toBe(referenceSlot([type], [value], slotCount));
      }),
      { numRuns: 10_000 },
    );
  });

  it('a composite slot equals the BigInt reference for every modulus', () => {
    fc.assert(
      fc.property(fc.array(keyColumn, { minLength: 1, maxLength: 4 }), modulus, (columns, slotCount) => {
        const types = columns.map((column) => column.type);
        const values = columns.map((column) => column.value);
        expect(slotOfKey(types, values, slotCount)).toBe(referenceSlot(types, values, slotCount));
      }),
      { numRuns: 5000 },
    );
  });

  it('slotOfKey with one column is slotOf', () => {
    fc.assert(
      fc.property(keyColumn, modulus, ({ type, value }, slotCount) => {
        expect(slotOfKey([type], [value], slotCount)).toBe(slotOf(type, value, slotCount));
      }),
      { numRuns: 2000 },
    );
  });

  it('is an integer in [0, M)', () => {
    fc.assert(
      fc.property(fc.array(keyColumn, { minLength: 1, maxLength: 3 }), modulus, (columns, slotCount) => {
        const slot = slotOfKey(columns.map((column) => column.type), columns.map((column) => column.value), slotCount);
        expect(Number.isInteger(slot) && slot >= 0 && slot < slotCount).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('with a power-of-two M, is the low bits of the slot for any larger power of two', () => {
    // What lets a slot split in two later: slot(M) = slot(2M) mod M.
    fc.assert(
      fc.property(keyColumn, fc.integer({ min: 0, max: 29 }), ({ type, value }, bits) => {
        expect(slotOf(type, value, 2 ** (bits + 1)) % 2 ** bits).toBe(slotOf(type, value, 2 ** bits));
      }),
    );
  });

  it('hashCombine64 is partbounds.c hash_combine64', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: U64 }), fc.bigInt({ min: 0n, max: U64 }), (a, b) => {
        expect(hashCombine64(a, b)).toBe(referenceCombine(a, b));
      }),
    );
    expect(hashCombine64(0n, 0n)).toBe(0x49a0f4dd15e5a8e3n);
  });
});

describe('input validation', () => {
  function badInputOf(action: () => unknown): ReshardError {
    try {
      action();
    } catch (error) {
      expect(error).toBeInstanceOf(ReshardError);
      const reshardError = error as ReshardError;
      expect(reshardError.code).toBe('bad_input');
      expect(reshardError.line()).not.toContain('\n');
      return reshardError;
    }
    throw new Error('expected a bad_input error, but nothing was thrown');
  }

  it.each<[string, ShardKeyValue]>([
    ['2^63', 2n ** 63n],
    ['-2^63 - 1', -(2n ** 63n) - 1n],
    ['2^63 as a string', '9223372036854775808'],
    ['a number beyond 2^53', 2 ** 60],
    ['a fraction', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['an empty string', ''],
    ['a lone sign', '-'],
    ['letters', 'abc'],
    ['spaces', ' 1'],
    ['underscores', '1_000'],
    ['hex', '0x10'],
    ['an exponent', '1e3'],
    ['a long string with a letter at the end', '12345678901234567890x'],
  ])('rejects a bigint key of %s', (_, value) => {
    badInputOf(() => slotOf('bigint', value, 64));
  });

  it('names the range and the value of an out-of-range bigint key', () => {
    const error = badInputOf(() => slotOf('bigint', 2n ** 63n, 64));
    expect(error.message).toContain('9223372036854775808');
    expect(error.message).toContain('out of range');
  });

  it.each<[string, ShardKeyValue]>([
    ['2^31', 2 ** 31],
    ['-2^31 - 1', -(2 ** 31) - 1],
    ['2^31 as a string', '2147483648'],
    ['2^31 as a bigint', 2n ** 31n],
    ['a 16-digit string', '1000000000000000'],
    ['a fraction', 0.5],
    ['letters', 'one'],
  ])('rejects an integer key of %s', (_, value) => {
    badInputOf(() => slotOf('integer', value, 64));
  });

  it.each<[string, ShardKeyValue]>([
    ['a NUL character', 'a\u0000b'],
    ['a lone high surrogate', 'a\ud800'],
    ['a lone low surrogate', '\udc00b'],
    ['swapped surrogates', '\ude00\ud83d'],
    ['a number', 42],
    ['a bigint', 42n],
  ])('rejects a text key with %s', (_, value) => {
    badInputOf(() => slotOf('text', value, 64));
  });

  it.each<[string, ShardKeyValue]>([
    ['too few digits', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'],
    ['too many digits', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111'],
    ['a non-hex digit', 'g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ['a double hyphen', 'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11'],
    ['a hyphen inside a group of four', 'a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ['a trailing hyphen', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-'],
    ['an unclosed brace', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ['a closing brace only', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'],
    ['surrounding spaces', ' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ['an empty string', ''],
    ['a number', 7],
  ])('rejects a uuid key with %s', (_, value) => {
    badInputOf(() => slotOf('uuid', value, 64));
  });

  it('shows at most 60 characters of a rejected value', () => {
    const error = badInputOf(() => slotOf('text', 'x'.repeat(10_000) + '\u0000', 64));
    expect(error.line().length).toBeLessThan(250);
  });

  it.each(SHARD_KEY_TYPES)('rejects a NULL %s key', (type) => {
    for (const value of [null, undefined]) {
      const error = badInputOf(() => slotOf(type, value as unknown as ShardKeyValue, 64));
      expect(error.message).toContain(type);
    }
  });

  it.each([0, -1, 1.5, 2 ** 31, Number.NaN])('rejects a slot count of %s', (slotCount) => {
    badInputOf(() => slotOf('bigint', 1, slotCount));
    badInputOf(() => slotOfKey(['bigint'], [1], slotCount));
  });

  it('rejects a composite key whose values do not match its columns', () => {
    badInputOf(() => slotOfKey(['bigint', 'text'], [1], 64));
    badInputOf(() => slotOfKey([], [], 64));
  });
});

describe('shardKeyTypeFromPostgres', () => {
  it.each([
    ['bigint', 'bigint'],
    ['int8', 'bigint'],
    ['integer', 'integer'],
    ['int4', 'integer'],
    ['text', 'text'],
    ['uuid', 'uuid'],
    ['UUID', 'uuid'],
  ] as const)('maps %s to %s', (name, type) => {
    expect(shardKeyTypeFromPostgres(name)).toBe(type);
  });

  it.each(['character varying', 'varchar', 'smallint', 'int2', 'numeric', 'bytea', 'timestamp with time zone', ''])('does not route %j', (name) => {
    expect(shardKeyTypeFromPostgres(name)).toBeUndefined();
  });

  it('knows every shard key type', () => {
    expect([...SHARD_KEY_TYPES].sort()).toEqual(['bigint', 'integer', 'text', 'uuid']);
  });
});
