import { badInput } from './errors.js';

/** A daily window in UTC, minutes after midnight; `endMinute` < `startMinute` wraps past midnight. */
export interface TimeWindow {
  startMinute: number;
  endMinute: number;
  text: string;
}

/** "01:00-05:00" (UTC) → a window; "22:00-02:00" wraps past midnight. One clear error otherwise. */
export function parseTimeWindow(text: string, option = '--window'): TimeWindow {
  const match = /^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$/.exec(text);
  const minute = (hours: string, minutes: string): number => (Number(hours) <= 24 && Number(minutes) < 60 ? Number(hours) * 60 + Number(minutes) : NaN);
  const startMinute = match ? minute(match[1]!, match[2]!) : NaN;
  const endMinute = match ? minute(match[3]!, match[4]!) : NaN;
  if (!(startMinute <= 1440 && endMinute <= 1440) || startMinute === endMinute) {
    throw badInput(`${option} must be a UTC time range like 01:00-05:00 (start and end different), got "${text}"`, `pass e.g. ${option} 01:00-05:00`);
  }
  return { startMinute: startMinute % 1440, endMinute: endMinute === 1440 ? 1440 : endMinute, text: text.trim() };
}

/** True when `at` (UTC) is inside any window; no windows means always. */
export function insideWindows(windows: readonly TimeWindow[], at: Date): boolean {
  if (windows.length === 0) return true;
  const minute = at.getUTCHours() * 60 + at.getUTCMinutes();
  return windows.some((window) => (window.startMinute < window.endMinute
    ? minute >= window.startMinute && minute < window.endMinute
    : minute >= window.startMinute || minute < window.endMinute));
}
