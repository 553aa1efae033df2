import type { Logger } from 'pino';

/** While a wait lasts, a line this often says what it waits for, how long so far and its bound. */
export const WAIT_LOG_EVERY_MS = 10_000;
/** A wait this long is no longer routine: its lines go at warn, so the default level shows a hang. */
export const WAIT_LONG_MS = 60_000;

export interface WaitLog {
  /** The wait ended: how (`done`, `timeout`, `failed`, …) and, for a failure, why. */
  end(outcome: string, fields?: Record<string, unknown>): void;
}

/**
 * Logs a wait: a line when it starts (debug), one every `WAIT_LOG_EVERY_MS`
 * while it lasts (info, warn past `WAIT_LONG_MS`: the default level shows a
 * hang), and one when it ends (debug when it was short and went well, else
 * info, warn past `WAIT_LONG_MS`). `what` names
 * what is awaited in words; `fields` are the ids (migration, slot, node).
 * `quiet` (for every statement reshard sends): nothing unless it lasts
 * `everyMs` or more. `warnAfterMs` (default `WAIT_LONG_MS`; Infinity for
 * waits that are long by nature: a paused migration, an initial copy that
 * shows its own progress, `reshard wait`).
 */
export function startWaitLog(
  logger: Logger,
  what: string,
  boundMs: number | undefined,
  fields: Record<string, unknown> = {},
  everyMs = WAIT_LOG_EVERY_MS,
  options: { quiet?: boolean; warnAfterMs?: number } = {},
): WaitLog {
  const warnAfterMs = options.warnAfterMs ?? WAIT_LONG_MS;
  const startedAt = performance.now();
  const base = { ...fields, wait: what, ...(boundMs !== undefined ? { boundMs: Math.round(boundMs) } : {}) };
  if (!options.quiet) logger.debug(base, `waiting for ${what}`);
  const timer = setInterval(() => {
    const waitedMs = Math.round(performance.now() - startedAt);
    const line = `still waiting for ${what}: ${Math.round(waitedMs / 1000)} s so far${boundMs !== undefined ? ` of at most ${Math.round(boundMs / 1000)} s` : ''}`;
    if (waitedMs >= warnAfterMs) logger.warn({ ...base, waitedMs }, line);
    else logger.info({ ...base, waitedMs }, line);
  }, everyMs);
  timer.unref();
  let ended = false;
  return {
    end(outcome, extra = {}) {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      const waitedMs = Math.round(performance.now() - startedAt);
      const line = { ...base, ...extra, outcome, waitedMs };
      const message = `wait for ${what}: ${outcome} after ${waitedMs} ms`;
      // A wait that ends otherwise than 'done' is the caller's to judge (a freeze over budget is retried): info.
      if (waitedMs >= warnAfterMs) logger.warn(line, message);
      else if (waitedMs >= everyMs) logger.info(line, message);
      else if (options.quiet) return;
      else if (outcome !== 'done') logger.info(line, message);
      else logger.debug(line, message);
    },
  };
}
