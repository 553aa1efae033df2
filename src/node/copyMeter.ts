import { Transform } from 'node:stream';
import { ReshardError } from '../core/errors.js';
import { queryTimeoutMs } from '../plumbing/connectTo.js';

/** Decides when copied bytes may pass on: a rate cap, a hold while replication lags. */
export interface CopyGate {
  /**
   * Resolves when `bytes` may pass; rejects when copying must stop. `streamed`
   * bytes crossed the network; `unstreamed` ones are the rest of a slot's
   * measured size, charged so the cap counts what progress counts.
   */
  admit(bytes: number, kind?: 'streamed' | 'unstreamed'): Promise<void>;
}

/**
 * A pass-through stage of a COPY pipe that counts the bytes (reporting the
 * running total) and lets each chunk on only when the gate admits it: holding
 * a chunk back stops reading from the source by backpressure, so a throttled
 * copy costs neither memory nor a busy loop. A copy that receives no byte for
 * `idleMs` (not counting the gate's holds) fails: a stalled network never
 * ends a COPY by itself.
 */
export function meteredCopyStream(onBytes: (bytesSoFar: number) => void, gate?: CopyGate, what = 'a COPY', idleMs = queryTimeoutMs()): Transform {
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      clearTimeout(timer);
      bytes += chunk.length;
      onBytes(bytes);
      const pass = (): void => {
        arm();
        callback(null, chunk);
      };
      if (!gate) {
        pass();
        return;
      }
      gate.admit(chunk.length).then(pass, (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))));
    },
  });
  function arm(): void {
    clearTimeout(timer);
    timer = setTimeout(() => stream.destroy(new ReshardError('timeout', `${what} received no data for ${idleMs} ms`,
      'check the network between the nodes and reshard; the move is rolled back or can be resumed')), idleMs);
  }
  arm();
  stream.on('finish', () => clearTimeout(timer));
  stream.on('close', () => clearTimeout(timer));
  return stream;
}
