import { describe, expect, it } from 'vitest';
import { parseDurationMs } from '../../src/cli/parseDuration.js';
import { ReshardError } from '../../src/core/errors.js';

describe('parseDurationMs', () => {
  it.each([
    ['1h', 3_600_000], ['30m', 1_800_000], ['30min', 1_800_000], ['90s', 90_000], ['500ms', 500], ['1.5h', 5_400_000], ['45', 45_000], ['2d', 172_800_000], [' 10 S ', 10_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDurationMs(text, '--timeout', 1)).toBe(ms);
  });

  it('takes the fallback when absent', () => {
    expect(parseDurationMs(undefined, '--timeout', 1234)).toBe(1234);
  });

  it.each(['', 'soon', '-1s', '0', '1 fortnight', '1h30m'])('refuses "%s" with one line naming the option and the fix', (text) => {
    let error: unknown;
    try {
      parseDurationMs(text, '--timeout', 1);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ReshardError);
    expect((error as ReshardError).line()).toBe(`--timeout must be a duration like 90s, 30m or 1h, got "${text}". Fix: pass e.g. --timeout 1h`);
  });
});
