import { errorText } from '../core/errors.js';

/**
 * A move failed before its point of no return and its steps were undone:
 * the slot is where it was. `reason` is the failure; its line is this error's.
 */
export class MoveRolledBack extends Error {
  override name = 'MoveRolledBack';
  constructor(readonly reason: unknown) {
    super(errorText(reason), { cause: reason });
  }

  line(): string {
    return errorText(this.reason);
  }
}
