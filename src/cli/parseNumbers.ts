import { badInput } from '../core/errors.js';

/** Parses an option that must be a whole number ≥ `min`; one clear error otherwise. */
export function parseWholeNumber(value: string | undefined, option: string, min: number, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw badInput(`${option} is required`, `pass ${option} <number>`);
    return fallback;
  }
  const number = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(number) || number < min) {
    throw badInput(`${option} must be a whole number ≥ ${min}, got "${value}"`, `pass e.g. ${option} ${Math.max(min, 1)}`);
  }
  return number;
}

export function parsePositiveNumber(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isFinite(number) || number < 0 || value.trim() === '') {
    throw badInput(`${option} must be a number ≥ 0, got "${value}"`, `pass e.g. ${option} 1`);
  }
  return number;
}

const BYTE_SUFFIXES: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** "500GB", "1.5TiB", "1000000" → bytes. */
export function parseByteSize(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const factor = match ? BYTE_SUFFIXES[match[2]!.toLowerCase()] : undefined;
  if (!match || factor === undefined || Number(match[1]) <= 0) {
    throw badInput(`${option} must be a size like 500GB or 1.5TiB, got "${value}"`, `pass e.g. ${option} 500GB`);
  }
  return Math.round(Number(match[1]) * factor);
}

/** "10", "10%" or "12.5 %" → 0.1, 0.125: a share of a whole, below 100 %. */
export function parsePercent(value: string | undefined, option: string, fallbackFraction: number): number {
  if (value === undefined) return fallbackFraction;
  const match = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(value);
  const percent = match ? Number(match[1]) : NaN;
  if (!match || !(percent >= 0 && percent < 100)) {
    throw badInput(`${option} must be a percentage from 0 to below 100, got "${value}"`, `pass e.g. ${option} 10%`);
  }
  return percent / 100;
}
