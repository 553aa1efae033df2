import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { SlotSplitter } from '../../src/node/slotSplitCopy.js';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

function header(extension = Buffer.alloc(0)): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeInt32BE(extension.length, 4);
  return Buffer.concat([SIGNATURE, fixed, extension]);
}

/** One row: int16 count, then each field as int32 length + bytes (null: -1). */
function row(fields: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0]!.writeInt16BE(fields.length);
  for (const field of fields) {
    const length = Buffer.alloc(4);
    length.writeInt32BE(field === null ? -1 : field.length);
    parts.push(length);
    if (field !== null) parts.push(field);
  }
  return Buffer.concat(parts);
}

function int4(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeInt32BE(value);
  return buffer;
}

const TRAILER = Buffer.from([0xff, 0xff]);

async function collect(stream: PassThrough): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Splits `input` fed in pieces of `pieceBytes`; returns what each of `targets` targets received. */
async function split(input: Buffer, targetOfSlot: (number | undefined)[], targets: number, pieceBytes: number): Promise<{ outputs: Buffer[]; rows: number[] }> {
  const streams = Array.from({ length: targets }, () => new PassThrough());
  const outputs = streams.map(collect);
  const splitter = new SlotSplitter(streams, targetOfSlot);
  const pieces: Buffer[] = [];
  for (let at = 0; at < input.length; at += pieceBytes) pieces.push(input.subarray(at, at + pieceBytes));
  await pipeline(Readable.from(pieces), splitter);
  return { outputs: await Promise.all(outputs), rows: splitter.totals.rows };
}

describe('SlotSplitter', () => {
  const a = row([int4(0), Buffer.from('key-a'), null]);
  const b = row([int4(1), Buffer.from('key-b'), Buffer.from('x')]);
  const c = row([int4(2), Buffer.from('key-c'), Buffer.alloc(0)]);
  const input = Buffer.concat([header(Buffer.from('ext')), a, b, c, TRAILER]);
  const expected = [
    Buffer.concat([header(), row([Buffer.from('key-a'), null]), row([Buffer.from('key-c'), Buffer.alloc(0)]), TRAILER]),
    Buffer.concat([header(), row([Buffer.from('key-b'), Buffer.from('x')]), TRAILER]),
  ];

  it('sends each row to its slot\'s target without the slot column, whatever the chunking', async () => {
    for (const pieceBytes of [1, 2, 3, 7, 19, 64, input.length]) {
      const { outputs, rows } = await split(input, [0, 1, 0], 2, pieceBytes);
      expect(outputs).toEqual(expected);
      expect(rows).toEqual([2, 1]);
    }
  });

  it('gives a target with no row a valid empty stream', async () => {
    const { outputs, rows } = await split(Buffer.concat([header(), a, TRAILER]), [0, 1], 2, 5);
    expect(outputs[1]).toEqual(Buffer.concat([header(), TRAILER]));
    expect(rows).toEqual([1, 0]);
  });

  it('refuses a row whose slot has no target, and a stream without its trailer', async () => {
    await expect(split(input, [0, 1], 2, 64)).rejects.toThrow(/invariant violated: a row of slot 2/);
    await expect(split(Buffer.concat([header(), a]), [0], 1, 64)).rejects.toThrow(/invariant violated: .*trailer/);
  });
});
