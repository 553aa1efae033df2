/**
 * CPU time of the benchmark's processes, read from /proc (Linux), so the
 * result shows which process the rebalance waits on.
 *
 * A PostgreSQL server is its postmaster and every process under it
 * (backends, walsenders, logical replication workers, the checkpointer …).
 * Its CPU time is the postmaster's own utime+stime, plus cutime+cstime (what
 * its exited, reaped children used), plus the same of every live
 * descendant: a backend that lives between two samples is counted while it
 * lives and through cutime once it exits. One that exits while a sample
 * reads /proc may be missed by that sample and counted by the next: an
 * interval of the timeline can be off by what it used, the total over the
 * rebalance is not.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProcStat {
  ppid: number;
  /** utime + stime, clock ticks. */
  ownTicks: number;
  /** cutime + cstime: children that exited and were reaped, clock ticks. */
  reapedChildrenTicks: number;
}

/** One process tree or single process the benchmark watches, by name ('n1', 'coordinator', …). */
export interface WatchedProcess {
  name: string;
  pid: number;
  /** With every descendant (a server), or the process alone (the coordinator, whose children are watched apart). */
  withDescendants: boolean;
}

export interface CpuSample {
  atMs: number;
  ticksByName: Map<string, number>;
  /** /proc/stat over all CPUs: ticks not idle (nor waiting for I/O), and all ticks. */
  machineBusyTicks: number;
  machineTotalTicks: number;
}

const ticksPerSecond = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The postmaster's pid: the first line of postmaster.pid in the data directory. */
export function postmasterPid(dataDir: string): number {
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${dataDir}/postmaster.pid`);
  return pid;
}

/** Fields after the command name, which may itself hold spaces and parentheses. */
function parseStat(text: string): ProcStat | undefined {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 of proc(5) (state): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
  const numberAt = (field: number): number => Number(fields[field - 3]);
  if (fields.length < 15) return undefined;
  return { ppid: numberAt(4), ownTicks: numberAt(14) + numberAt(15), reapedChildrenTicks: numberAt(16) + numberAt(17) };
}

function readAllStats(): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = parseStat(readFileSync(`/proc/${entry}/stat`, 'utf8'));
      if (stat) stats.set(Number(entry), stat);
    } catch {
      // The process exited between listing and reading: its time is in its parent's cutime now.
    }
  }
  return stats;
}

function treeTicks(root: number, stats: ReadonlyMap<number, ProcStat>, childrenOf: ReadonlyMap<number, number[]>): number {
  let ticks = 0;
  const pending = [root];
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    const stat = stats.get(pid);
    if (!stat) continue;
    ticks += stat.ownTicks + stat.reapedChildrenTicks;
    pending.push(...(childrenOf.get(pid) ?? []));
  }
  return ticks;
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal (guest time is already inside user).
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const total = user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!;
  return { busy: total - idle! - iowait!, total };
}

export function sampleCpu(watched: readonly WatchedProcess[]): CpuSample {
  const stats = readAllStats();
  const childrenOf = new Map<number, number[]>();
  for (const [pid, stat] of stats) childrenOf.set(stat.ppid, [...(childrenOf.get(stat.ppid) ?? []), pid]);
  const ticksByName = new Map<string, number>();
  for (const process of watched) {
    const own = stats.get(process.pid);
    ticksByName.set(process.name, process.withDescendants ? treeTicks(process.pid, stats, childrenOf) : own?.ownTicks ?? 0);
  }
  const machine = machineTicks();
  return { atMs: Date.now(), ticksByName, machineBusyTicks: machine.busy, machineTotalTicks: machine.total };
}

export interface CpuShare {
  cpu_seconds: number;
  /** Of the machine's whole capacity (every core) over the interval: 0.5 on 2 cores = one core busy. */
  share_of_machine: number;
}

export interface CpuReport {
  wall_seconds: number;
  cpus: number;
  by_process: Record<string, CpuShare>;
  /** Every process on the machine, ours and everyone else's. */
  machine_busy: CpuShare;
  /** Machine busy minus the watched processes: other load on a shared machine. */
  not_watched: CpuShare;
}

/** CPU used between two samples, per watched process and for the machine. */
export function cpuBetween(from: CpuSample, to: CpuSample, cpus: number): CpuReport {
  const wallSeconds = (to.atMs - from.atMs) / 1000;
  const share = (ticks: number): CpuShare => {
    const seconds = ticks / ticksPerSecond;
    return { cpu_seconds: round(seconds), share_of_machine: round(wallSeconds > 0 ? seconds / (wallSeconds * cpus) : 0) };
  };
  const byProcess: Record<string, CpuShare> = {};
  let watchedTicks = 0;
  for (const [name, ticks] of to.ticksByName) {
    const used = ticks - (from.ticksByName.get(name) ?? 0);
    watchedTicks += used;
    byProcess[name] = share(used);
  }
  // /proc/stat counts every CPU's ticks: machine-wide seconds are its ticks per CPU-second.
  const machineBusyTicks = to.machineBusyTicks - from.machineBusyTicks;
  return {
    wall_seconds: round(wallSeconds),
    cpus,
    by_process: byProcess,
    machine_busy: share(machineBusyTicks),
    not_watched: share(Math.max(0, machineBusyTicks - watchedTicks)),
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** Samples every `intervalMs` until stopped; the samples make a timeline of shares. */
export class CpuSampler {
  readonly samples: CpuSample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly watched: readonly WatchedProcess[], intervalMs: number) {
    this.samples.push(sampleCpu(watched));
    this.timer = setInterval(() => this.samples.push(sampleCpu(watched)), intervalMs);
  }

  stop(): CpuSample[] {
    clearInterval(this.timer);
    this.samples.push(sampleCpu(this.watched));
    return this.samples;
  }
}

/**
 * The kernel's CPU pressure ("some": share of time at least one runnable task
 * waited for a CPU), averaged over 10 and 60 s. Read while our own processes
 * are idle, it is the load of the machine's neighbours (this VM shows it with
 * no process of ours running); undefined where the kernel has no PSI.
 */
export function cpuPressure(): { some_avg10: number; some_avg60: number } | undefined {
  try {
    const some = readFileSync('/proc/pressure/cpu', 'utf8').split('\n').find((line) => line.startsWith('some '));
    const field = (name: string): number => Number(new RegExp(`\\b${name}=([\\d.]+)`).exec(some ?? '')?.[1]);
    const avg10 = field('avg10');
    const avg60 = field('avg60');
    return Number.isFinite(avg10) && Number.isFinite(avg60) ? { some_avg10: avg10, some_avg60: avg60 } : undefined;
  } catch {
    return undefined;
  }
}
