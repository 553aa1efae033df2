/**
 * An assertion guards an invariant: failing one is a bug in reshard, not an
 * operating error, so it throws a distinct error that callers never catch.
 */
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantViolation(`invariant violated: ${message}`);
}

export function assertNever(value: never, message = 'unexpected value'): never {
  throw new InvariantViolation(`${message}: ${JSON.stringify(value)}`);
}
