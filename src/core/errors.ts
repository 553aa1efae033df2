/**
 * An operating error the user can act on: one line that names the problem
 * (`message`) and the fix (`fix`). The CLI prints exactly that line and exits
 * non-zero; nothing else about the error is shown.
 */
export type ReshardErrorCode =
  | 'bad_input'
  | 'unreachable'
  | 'not_found'
  | 'conflict'
  | 'unsupported'
  | 'precondition'
  | 'verification_failed'
  | 'timeout'
  | 'aborted';

export const EXIT_CODE_BY_ERROR: Record<ReshardErrorCode, number> = {
  bad_input: 2,
  unreachable: 3,
  not_found: 4,
  conflict: 5,
  unsupported: 6,
  precondition: 7,
  verification_failed: 8,
  timeout: 9,
  aborted: 10,
};

export class ReshardError extends Error {
  override name = 'ReshardError';
  constructor(
    readonly code: ReshardErrorCode,
    message: string,
    readonly fix: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The single line shown to the user. */
  line(): string {
    return `${this.message}. Fix: ${this.fix}`;
  }

  get exitCode(): number {
    return EXIT_CODE_BY_ERROR[this.code];
  }
}

/** One line for any error: a ReshardError's problem and fix, else its message. */
export function errorText(error: unknown): string {
  if (error instanceof Error && typeof (error as { line?: unknown }).line === 'function') return (error as unknown as { line(): string }).line();
  return error instanceof Error ? error.message : String(error);
}

export function badInput(message: string, fix: string): ReshardError {
  return new ReshardError('bad_input', message, fix);
}

/**
 * An error of a step, as recorded ("problem. Fix: fix"), wrapped into one
 * line for the command that ran it: the step's own fix first, then `then`.
 */
export function stoppedError(what: string, recorded: string | undefined, then: string): ReshardError {
  const line = recorded ?? 'a move failed';
  const at = line.lastIndexOf('. Fix: ');
  const problem = at < 0 ? line : line.slice(0, at);
  const fix = at < 0 ? undefined : line.slice(at + '. Fix: '.length);
  return new ReshardError('aborted', `${what} stopped: ${problem}`, fix ? `${fix.replace(/\.$/, '')}; then ${then}` : `fix the cause, then ${then}`);
}
