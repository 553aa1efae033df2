import { describe, expect, it } from 'vitest';
import { ReshardError, stoppedError } from '../../src/core/errors.js';

describe('stoppedError', () => {
  it('keeps one "Fix:" in the line: the step\'s own fix, then what to run', () => {
    const recorded = new ReshardError('timeout', 'node "n4" did not answer within 4000 ms', 'check the network between reshard and the node').line();
    expect(stoppedError('migration 3', recorded, 'run `reshard resume`').line())
      .toBe('migration 3 stopped: node "n4" did not answer within 4000 ms. Fix: check the network between reshard and the node; then run `reshard resume`');
  });

  it('falls back to a general fix for a raw error', () => {
    expect(stoppedError('migration 3', 'write ECONNRESET', 'run `reshard resume`').line())
      .toBe('migration 3 stopped: write ECONNRESET. Fix: fix the cause, then run `reshard resume`');
    expect(stoppedError('migration 3', undefined, 'run `reshard resume`').line()).toMatch(/^migration 3 stopped: a move failed\. Fix: /);
  });
});
