/**
 * `reshard plan | head -1`: once the reader of stdout (or stderr) has gone,
 * writes to it fail with EPIPE, and Node raises that as an unhandled 'error'
 * event — a stack trace and exit 1. A closed reader only means nobody wants
 * more output, so the rest of the output is dropped quietly and the command
 * finishes as it would have: a rebalance piped into `head` must not stop
 * halfway because its reader left. The exit code stays the command's own.
 */
const QUIET_CODES = new Set(['EPIPE', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);

const watched = new WeakSet<NodeJS.WritableStream>();

export function dropOutputOnceReaderCloses(streams: readonly NodeJS.WritableStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    if (watched.has(stream)) continue;
    watched.add(stream);
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== undefined && QUIET_CODES.has(error.code)) return;
      // Anything else (a full disk behind a redirect) is a real failure: raise it as Node would have.
      throw error;
    });
  }
}
