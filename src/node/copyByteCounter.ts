import { Transform } from 'node:stream';
import { ReshardError } from '../core/errors.js';
import { queryTimeoutMs } from './connectNode.js';

/**
 * The middle of a COPY pipeline: counts the bytes going through (for
 * progress) and fails the copy when no byte has come for `idleMs` — a
 * stalled network never ends a COPY by itself.
 */
export function copyByteCounter(what: string, onBytes: (bytes: number) => void, idleMs = queryTimeoutMs()): Transform {
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      arm();
      bytes += chunk.length;
      onBytes(bytes);
      callback(null, chunk);
    },
  });
  function arm(): void {
    clearTimeout(timer);
    timer = setTimeout(() => counter.destroy(new ReshardError('timeout', `${what} received no data for ${idleMs} ms`,
      'check the network between the nodes and reshard; the move is rolled back or can be resumed')), idleMs);
  }
  arm();
  counter.on('close', () => clearTimeout(timer));
  counter.on('finish', () => clearTimeout(timer));
  return counter;
}
