import { badInput } from '../core/errors.js';
import type { TimeWindow } from '../core/timeWindows.js';
import { HEADROOM_FRACTION_DEFAULT } from '../coordinator/nodeSpaces.js';
import type { MoverModeOption } from './rebalance.js';

/** How the autopilot watches and when it acts. */
export interface AutopilotSettings {
  /** One measurement period; triggers look at the last `sustainPeriods` of them. */
  periodMs: number;
  /** A node must be over-loaded in this many consecutive periods before the autopilot acts (hysteresis). */
  sustainPeriods: number;
  /** Relative threshold: over-loaded beyond (1 + tolerance) × its weighted share of the load. */
  tolerance: number;
  /** Absolute floor: and by more than this much load (calls/s, or scans + writes/s without routers) above its share. */
  loadFloor: number;
  /** No move that removes less load than this per MiB it moves. */
  benefitPerMiBMin: number;
  /** A slot the autopilot moved is left where it is for this long. */
  cooldownMs: number;
  /** At most this many moves per migration the autopilot starts. */
  movesMax: number;
  /** UTC windows in which it may start or continue work; outside them it only plans. Empty: always. */
  windows: TimeWindow[];
  mode: MoverModeOption;
  moveConcurrencyMax: number;
  /** How long its lease (one active autopilot per catalog) lives without renewal. */
  leaseMs: number;
  /** Without router reports, a one-off evaluation reads the nodes' counters twice this far apart. */
  sampleMs: number;
  /** Bytes trigger: a node holds beyond (1 + bytesTolerance) × its weighted share of the bytes… */
  bytesTolerance: number;
  /** …and more than this many bytes above it, for sustainPeriods evaluations in a row. */
  bytesFloor: number;
  /** Headroom trigger: a node with less than this share of its capacity free acts at once. */
  headroomFraction: number;
  /** Copies slowed while the routers' p99 on the other slots is above this factor of the baseline. */
  maxLatencyImpact?: number;
  /** Cap on the bytes per second all copies of its migrations move together (as `--max-copy-rate` of rebalance). */
  copyBytesPerSecMax?: number;
}

export const AUTOPILOT_DEFAULTS: AutopilotSettings = {
  periodMs: 60_000,
  sustainPeriods: 3,
  tolerance: 0.1,
  loadFloor: 10,
  benefitPerMiBMin: 0,
  cooldownMs: 30 * 60_000,
  movesMax: 8,
  windows: [],
  mode: 'online',
  moveConcurrencyMax: 4,
  leaseMs: 30_000,
  sampleMs: 5_000,
  bytesTolerance: 0.2,
  bytesFloor: 256 * 1_048_576,
  headroomFraction: HEADROOM_FRACTION_DEFAULT,
};

/** A move counts as at least this many bytes (its fixed cost), for benefit per byte. */
export const MOVE_BYTES_FLOOR = 1_048_576;

/** Library callers pass settings unchecked by a CLI parser: refused before anything is read. */
export function assertAutopilotSettings(settings: AutopilotSettings): void {
  const check = (ok: boolean, what: string, fix: string): void => {
    if (!ok) throw badInput(what, fix);
  };
  check(settings.periodMs >= 100, `the autopilot period must be at least 100 ms, got ${settings.periodMs}`, 'pass e.g. --period 60s');
  check(Number.isSafeInteger(settings.sustainPeriods) && settings.sustainPeriods >= 1 && settings.sustainPeriods <= 100, `--sustain must be a whole number of periods from 1 to 100, got ${settings.sustainPeriods}`, 'pass e.g. --sustain 3');
  check(settings.tolerance >= 0 && settings.tolerance <= 10, `--tolerance must be between 0 and 10 (a fraction: 0.1 = 10 %), got ${settings.tolerance}`, 'pass e.g. --tolerance 0.1');
  check(settings.loadFloor >= 0 && Number.isFinite(settings.loadFloor), `--floor must be a load ≥ 0, got ${settings.loadFloor}`, 'pass e.g. --floor 10');
  check(settings.benefitPerMiBMin >= 0 && Number.isFinite(settings.benefitPerMiBMin), `--min-benefit must be ≥ 0, got ${settings.benefitPerMiBMin}`, 'pass e.g. --min-benefit 0');
  check(settings.cooldownMs >= 0, `--cooldown must be a duration ≥ 0, got ${settings.cooldownMs} ms`, 'pass e.g. --cooldown 30m');
  check(Number.isSafeInteger(settings.movesMax) && settings.movesMax >= 1, `--max-moves must be a whole number ≥ 1, got ${settings.movesMax}`, 'pass e.g. --max-moves 8');
  check(Number.isSafeInteger(settings.moveConcurrencyMax) && settings.moveConcurrencyMax >= 1, `--concurrency must be a whole number ≥ 1, got ${settings.moveConcurrencyMax}`, 'pass e.g. --concurrency 4');
  check(settings.leaseMs >= 1_000, `--lease must be at least 1 s, got ${settings.leaseMs} ms`, 'pass e.g. --lease 30s');
  check(settings.maxLatencyImpact === undefined || settings.maxLatencyImpact > 1, `--max-latency-impact must be a factor above 1, got ${settings.maxLatencyImpact}`, 'pass e.g. --max-latency-impact 1.2');
  check(settings.copyBytesPerSecMax === undefined || (Number.isFinite(settings.copyBytesPerSecMax) && settings.copyBytesPerSecMax > 0), `--max-copy-rate must be a size per second above 0, got ${settings.copyBytesPerSecMax}`, 'pass e.g. --max-copy-rate 50MB');
  check(settings.bytesTolerance >= 0 && settings.bytesTolerance <= 10, `--bytes-tolerance must be between 0 and 10 (a fraction: 0.2 = 20 %), got ${settings.bytesTolerance}`, 'pass e.g. --bytes-tolerance 0.2');
  check(settings.bytesFloor >= 0 && Number.isFinite(settings.bytesFloor), `--bytes-floor must be a size ≥ 0, got ${settings.bytesFloor}`, 'pass e.g. --bytes-floor 256MB');
  check(settings.headroomFraction >= 0 && settings.headroomFraction < 1, `--headroom must be a fraction in [0, 1), got ${settings.headroomFraction}`, 'pass e.g. --headroom 0.1');
  check(settings.mode === 'online' || settings.mode === 'offline', `mode "${String(settings.mode)}" is not a mover`, 'pass --mode online or --mode offline');
}
