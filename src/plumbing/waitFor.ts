import { ReshardError } from '../core/errors.js';
import { errorFields, log } from './log.js';
import { startWaitLog, WAIT_LOG_EVERY_MS } from './waitLog.js';

const logger = log('wait');

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` every `pollMs` until it returns a value other than undefined,
 * or throws a timeout error naming `what` after `timeoutMs`. Every wait in
 * reshard has such a limit. A function `pollMs` is asked before each pause
 * (a wait that knows from its last look how long the rest may take).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { timeoutMs: number; pollMs: number | (() => number); fix: string; logFields?: Record<string, unknown>; longIsExpected?: boolean },
): Promise<T> {
  const deadline = performance.now() + options.timeoutMs;
  const waitLog = startWaitLog(logger, what, options.timeoutMs, options.logFields, WAIT_LOG_EVERY_MS, options.longIsExpected ? { warnAfterMs: Infinity } : {});
  try {
    for (;;) {
      const value = await probe();
      if (value !== undefined) {
        waitLog.end('done');
        return value;
      }
      if (performance.now() >= deadline) {
        waitLog.end('timeout');
        throw new ReshardError('timeout', `${what} did not happen within ${options.timeoutMs} ms`, options.fix);
      }
      await sleep(typeof options.pollMs === 'number' ? options.pollMs : options.pollMs());
    }
  } catch (error) {
    waitLog.end('failed', errorFields(error));
    throw error;
  }
}

/** Bounds one long operation (an initial copy): a timeout error naming `what` if it outlasts `timeoutMs`. */
export async function withTimeout<T>(what: string, work: Promise<T>, timeoutMs: number, fix: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ReshardError('timeout', `${what} did not finish within ${timeoutMs} ms`, fix)), timeoutMs);
  });
  // A long operation shows its own progress (an initial copy's bytes): its lines stay at info however long it runs.
  const waitLog = startWaitLog(logger, what, timeoutMs, {}, WAIT_LOG_EVERY_MS, { warnAfterMs: Infinity });
  try {
    const value = await Promise.race([work, timeout]);
    waitLog.end('done');
    return value;
  } catch (error) {
    waitLog.end(error instanceof ReshardError && error.code === 'timeout' ? 'timeout' : 'failed', errorFields(error));
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
