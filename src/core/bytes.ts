import { assert } from './assert.js';

// Decimal (SI) units, as disks and `pg_size_pretty`'s neighbours on dashboards
// are usually read; the exact byte count is always available next to it.
const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'] as const;

/** A byte count for people: "512 B", "2.1 MB", "213 GB". */
export function formatBytes(bytes: number): string {
  assert(Number.isFinite(bytes), `formatBytes got ${bytes}`);
  const sign = bytes < 0 ? '-' : '';
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  if (unit === 0) return `${sign}${Math.round(value)} B`;
  // Three significant digits at most; rounding may carry into the next unit (999.96 kB → 1.0 MB).
  let text = value < 100 ? value.toFixed(1) : value.toFixed(0);
  if (Number(text) >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
    text = value.toFixed(1);
  }
  return `${sign}${text} ${BYTE_UNITS[unit]}`;
}
