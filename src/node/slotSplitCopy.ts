import { Writable } from 'node:stream';
import { assert } from '../core/assert.js';
import { ReshardError } from '../core/errors.js';

/**
 * One binary COPY stream split by slot: the source sends every row once, led
 * by its slot (an int4 column it computes), and each row goes on to the COPY
 * stream of its slot's owner with the slot column taken off. One scan of the
 * source then feeds every owner (issue 13: one filtered scan per owner — each
 * hashing every row — made an adoption's copy half as fast as a raw COPY).
 * Rows are not decoded: only their field lengths are read.
 *
 * Binary COPY format (PostgreSQL docs, "Binary Format"): an 11-byte signature,
 * int32 flags, int32 header-extension length and the extension; then per row
 * an int16 field count and per field an int32 length (-1: NULL) and its bytes;
 * then the trailer, an int16 -1.
 */

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const HEADER_FIXED_BYTES = SIGNATURE.length + 4 + 4;
/** The header every owner's stream starts with: the signature, no flags, no extension. */
const PLAIN_HEADER = Buffer.concat([SIGNATURE, Buffer.alloc(8)]);
const TRAILER = Buffer.from([0xff, 0xff]);

export interface SlotSplitTotals {
  /** Rows sent to each target, by position. */
  rows: number[];
}

/**
 * A writable that takes the source's binary COPY stream (first column: the
 * row's slot as int4) and writes each row, slot column removed, to
 * `targets[targetOfSlot[slot]]` (each a COPY … FROM STDIN (FORMAT binary)
 * stream). It waits for every target that asks (backpressure), and ends
 * the targets once the source's trailer has passed; a row of a slot with no
 * target is a bug (the slot map gives every slot an owner) and fails the copy.
 */
export class SlotSplitter extends Writable {
  readonly totals: SlotSplitTotals;
  private pending: Buffer | undefined;
  private headerRead = false;
  private trailerSeen = false;
  /** int16 field counts as the targets get them (one fewer than the source's), by the source's count. */
  private readonly countPrefixes = new Map<number, Buffer>();

  constructor(private readonly targets: readonly Writable[], private readonly targetOfSlot: readonly (number | undefined)[]) {
    super({ highWaterMark: 1 << 20 });
    this.totals = { rows: targets.map(() => 0) };
    for (const target of targets) target.write(PLAIN_HEADER);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let parts: Buffer[][];
    try {
      parts = this.split(chunk);
    } catch (error) {
      callback(error as Error);
      return;
    }
    const waits: Promise<void>[] = [];
    for (const [index, target] of this.targets.entries()) {
      const out = parts[index]!;
      if (out.length === 0) continue;
      if (!target.write(out.length === 1 ? out[0] : Buffer.concat(out))) waits.push(drained(target));
    }
    if (waits.length === 0) callback();
    else Promise.all(waits).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      // A source that fails mid-stream fails the pipeline before this: a stream that ends without its trailer is a bug.
      assert(this.trailerSeen && (this.pending === undefined || this.pending.length === 0), 'the source\'s binary COPY stream ends with its trailer');
    } catch (error) {
      callback(error as Error);
      return;
    }
    for (const target of this.targets) target.end(TRAILER);
    callback();
  }

  /** The rows of `chunk` (after what an earlier chunk left unfinished), by target; keeps an unfinished row for the next chunk. */
  private split(chunk: Buffer): Buffer[][] {
    const buffer = this.pending !== undefined && this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const parts: Buffer[][] = this.targets.map(() => []);
    let at = 0;
    if (!this.headerRead) {
      if (buffer.length < HEADER_FIXED_BYTES) {
        this.pending = buffer;
        return parts;
      }
      assert(buffer.subarray(0, SIGNATURE.length).equals(SIGNATURE), 'a binary COPY stream starts with its signature');
      const extensionBytes = buffer.readInt32BE(SIGNATURE.length + 4);
      if (buffer.length < HEADER_FIXED_BYTES + extensionBytes) {
        this.pending = buffer;
        return parts;
      }
      at = HEADER_FIXED_BYTES + extensionBytes;
      this.headerRead = true;
    }
    while (!this.trailerSeen) {
      if (buffer.length - at < 2) break;
      const fields = buffer.readInt16BE(at);
      if (fields === -1) {
        this.trailerSeen = true;
        at += 2;
        break;
      }
      // The slot column: an int4, never NULL.
      if (buffer.length - at < 2 + 4 + 4) break;
      assert(fields >= 1 && buffer.readInt32BE(at + 2) === 4, 'every row of the split COPY starts with its slot as int4');
      const slot = buffer.readInt32BE(at + 6);
      const rowStart = at + 10;
      let end = rowStart;
      let complete = true;
      for (let field = 1; field < fields; field++) {
        if (buffer.length - end < 4) {
          complete = false;
          break;
        }
        const length = buffer.readInt32BE(end);
        end += 4 + (length > 0 ? length : 0);
        if (end > buffer.length) {
          complete = false;
          break;
        }
      }
      if (!complete) break;
      const target = this.targetOfSlot[slot];
      // The slot map gives every slot an owner, and the source computes slots as the owners' partitions take them.
      assert(target !== undefined, `a row of slot ${slot} has an owner to go to`);
      parts[target]!.push(this.countPrefix(fields), buffer.subarray(rowStart, end));
      this.totals.rows[target]!++;
      at = end;
    }
    this.pending = at < buffer.length ? Buffer.from(buffer.subarray(at)) : undefined;
    return parts;
  }

  private countPrefix(sourceFields: number): Buffer {
    let prefix = this.countPrefixes.get(sourceFields);
    if (!prefix) {
      prefix = Buffer.alloc(2);
      prefix.writeInt16BE(sourceFields - 1);
      this.countPrefixes.set(sourceFields, prefix);
    }
    return prefix;
  }
}

function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      stream.off('error', onError);
      stream.off('close', onClose);
      resolve();
    };
    const onError = (error: Error): void => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      reject(error);
    };
    const onClose = (): void => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      reject(new ReshardError('unreachable', 'an owner\'s COPY stream closed during the copy', 'check the owner\'s log; then `reshard resume` (the copy starts again)'));
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}
