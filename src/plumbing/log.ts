import { pino, type Logger } from 'pino';

/**
 * reshard's structured log (pino, JSON lines). Every layer logs through
 * `log(component)`; the CLI decides once where lines go and from which level
 * (`configureLogging`). Until then nothing is written: a library embedding
 * reshard gets no output it did not ask for.
 *
 * Secrets: a field named `password` (at any of the first three depths) is
 * replaced by pino's redaction; a connection is logged only as
 * `describeConnection(…)`, never as its settings object.
 */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggingOptions {
  level: LogLevel;
  /** Appended as JSON lines; absent: stderr. */
  file?: string | undefined;
}

/** Fields that may hold a secret wherever they appear in a log line's object. */
const REDACTED_PATHS = [
  'password', '*.password', '*.*.password',
  'passwords', '*.passwords',
  'connectionString', '*.connectionString',
];

let root: Logger = pino({ level: 'silent' });
/** Bumped by every configuration, so component loggers made before it follow it. */
let generation = 0;

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** Where log lines go from now on (the CLI calls it once, before any command runs). */
export function configureLogging(options: LoggingOptions): void {
  const destination = options.file
    ? pino.destination({ dest: options.file, append: true, sync: true })
    // Synchronous: a CLI that exits right after an error must not lose the line that explains it.
    : pino.destination({ dest: 2, sync: true });
  root = pino({
    level: options.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  }, destination);
  generation++;
}

/** One component's logger (`log('journal').info({ slot }, 'step done')`). Cheap to hold at module level. */
export function log(component: string): Logger {
  return new Proxy({} as Logger, {
    get(_target, property) {
      const current = componentLogger(component);
      const value = Reflect.get(current, property, current) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(current) : value;
    },
  });
}

const children = new Map<string, { generation: number; logger: Logger }>();

function componentLogger(component: string): Logger {
  const cached = children.get(component);
  if (cached && cached.generation === generation) return cached.logger;
  const logger = root.child({ component });
  children.set(component, { generation, logger });
  return logger;
}

/** An error as log fields: its message (and code), never its whole object (a pg error can carry the query's parameters). */
export function errorFields(error: unknown): { error: string; code?: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { error: error.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { error: String(error) };
}
