import { Transform } from 'node:stream';

/** Decides when copied bytes may pass on: a rate cap, a hold while replication lags. */
export interface CopyGate {
  /** Resolves when `bytes` may pass; rejects when copying must stop. */
  admit(bytes: number): Promise<void>;
}

/**
 * A pass-through stage of a COPY pipe that counts the bytes (reporting the
 * running total) and lets each chunk on only when the gate admits it: holding
 * a chunk back stops reading from the source by backpressure, so a throttled
 * copy costs neither memory nor a busy loop.
 */
export function meteredCopyStream(onBytes: (bytesSoFar: number) => void, gate?: CopyGate): Transform {
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      onBytes(bytes);
      if (!gate) {
        callback(null, chunk);
        return;
      }
      gate.admit(chunk.length).then(() => callback(null, chunk), (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))));
    },
  });
}
