import { badInput } from '../core/errors.js';

const MS_BY_UNIT: Record<string, number> = { ms: 1, s: 1_000, '': 1_000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** "1h", "30m", "90s", "500ms", "1.5h", "45" (seconds) → ms; one clear error otherwise. */
export function parseDurationMs(value: string | undefined, option: string, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const factor = match ? MS_BY_UNIT[match[2]!.toLowerCase()] : undefined;
  const ms = match && factor !== undefined ? Math.round(Number(match[1]) * factor) : NaN;
  if (!(ms > 0) || !Number.isSafeInteger(ms)) {
    throw badInput(`${option} must be a duration like 90s, 30m or 1h, got "${value}"`, `pass e.g. ${option} 1h`);
  }
  return ms;
}
