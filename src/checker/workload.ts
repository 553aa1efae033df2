import { slotOf } from '../core/hash.js';
import type { Router } from '../router/router.js';

export interface WorkloadOptions {
  clients: number;
  counters: number;
  /** Slots that calls should favour now (e.g. the ones moving), with this probability. */
  hotSlots?: () => readonly number[];
  hotProbability?: number;
  /** Pause between a client's calls, to pace the load (0 = as fast as possible). */
  thinkMs?: number;
  /** The clock of `samples`; ms since the workload started by default (pass a wall clock to compare across processes). */
  clock?: () => number;
}

/** Milliseconds on a clock that two processes on one machine share. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export type OperationKind = 'insert' | 'increment' | 'delete';

/** One routed call as the client saw it. */
export interface OperationSample {
  kind: OperationKind;
  slot: number;
  startMs: number;
  latencyMs: number;
  outcome: 'ok' | 'error';
}

/** What the clients were told: the ground truth the checker verifies. */
export interface WorkloadLog {
  insertedAcked: Set<number>;
  insertedUnknown: Set<number>;
  deletedAcked: Set<number>;
  deletedUnknown: Set<number>;
  incrementsAcked: Map<number, number>;
  incrementsUnknown: Map<number, number>;
  /** Calls that returned but did something other than asked (e.g. an UPDATE that matched 0 rows). */
  anomalies: string[];
  errors: string[];
  samples: OperationSample[];
}

interface CallOutcome {
  /** One row changed, as the call intended. */
  asExpected: boolean;
  /** Where the router sent it (node@epoch). */
  servedBy: { owner: string; epoch: number } | undefined;
}

function outcome(result: { rowCount: number | null }): CallOutcome {
  return { asExpected: result.rowCount === 1, servedBy: (result as { reshardRoute?: { owner: string; epoch: number } }).reshardRoute };
}

/** Distinct id spaces per client, far from counter ids. */
const ITEM_ID_BASE = 1_000_000_000;
const ITEM_IDS_PER_CLIENT = 1_000_000_000;

/**
 * Clients that write through the router while a rebalance runs: inserts of
 * unique rows, increments of counters and deletes of rows they inserted,
 * each outcome recorded as acknowledged, or unknown when the call failed.
 */
export class Workload {
  readonly log: WorkloadLog = {
    insertedAcked: new Set(), insertedUnknown: new Set(), deletedAcked: new Set(), deletedUnknown: new Set(),
    incrementsAcked: new Map(), incrementsUnknown: new Map(), anomalies: [], errors: [], samples: [],
  };
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly startedAt = performance.now();

  constructor(private readonly router: Router, private readonly options: WorkloadOptions, private readonly modulus: number) {}


  /** Creates the counters (through the router) so increments have rows to hit. */
  async prepare(): Promise<void> {
    for (let id = 1; id <= this.options.counters; id++) {
      await this.router.query(id, 'INSERT INTO reshard_check_counters (id, value) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING', [id]);
    }
  }

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.options.clients }, (_, client) => this.clientLoop(client));
  }

  async stop(): Promise<WorkloadLog> {
    this.running = false;
    await Promise.all(this.loops);
    return this.log;
  }

  /** The clock of `samples`: ms since the workload was created, unless options.clock says otherwise. */
  now(): number {
    return this.options.clock ? this.options.clock() : performance.now() - this.startedAt;
  }

  /** Changes where the clients aim (for a workload driven from another process). */
  setHotSlots(hotSlots: () => readonly number[]): void {
    this.options.hotSlots = hotSlots;
  }

  private async clientLoop(client: number): Promise<void> {
    const mine: number[] = [];
    let nextItem = ITEM_ID_BASE + client * ITEM_IDS_PER_CLIENT;
    const freshIdsBySlot = new Map<number, number[]>();
    const freshId = (slot: number | undefined): number => {
      if (slot === undefined) return nextItem++;
      const queue = freshIdsBySlot.get(slot) ?? [];
      freshIdsBySlot.set(slot, queue);
      // Scanning forward from the client's counter finds one in ~modulus steps.
      for (let tries = 0; queue.length === 0 && tries < this.modulus * 64; tries++) {
        const id = nextItem++;
        const idSlot = slotOf('bigint', id, this.modulus);
        if (idSlot === slot) queue.push(id);
        else {
          const other = freshIdsBySlot.get(idSlot) ?? [];
          if (other.length < 16) {
            other.push(id);
            freshIdsBySlot.set(idSlot, other);
          }
        }
      }
      return queue.shift() ?? nextItem++;
    };
    const counterIn = (slot: number | undefined): number => {
      if (slot !== undefined) {
        for (let id = 1; id <= this.options.counters; id++) if (slotOf('bigint', id, this.modulus) === slot) return id;
      }
      return 1 + Math.floor(Math.random() * this.options.counters);
    };
    while (this.running) {
      const hot = this.options.hotSlots?.() ?? [];
      const hotSlot = hot.length > 0 && Math.random() < (this.options.hotProbability ?? 0.3) ? hot[Math.floor(Math.random() * hot.length)] : undefined;
      const dice = Math.random();
      if (dice < 0.5 || (dice >= 0.85 && mine.length === 0)) {
        const id = freshId(hotSlot);
        await this.call('insert', id, async () => {
          return outcome(await this.router.query(id, 'INSERT INTO reshard_check_items (id, worker, payload) VALUES ($1, $2, $3)', [id, client, `item ${id}`]));
        }, () => { this.log.insertedAcked.add(id); mine.push(id); }, () => this.log.insertedUnknown.add(id));
      } else if (dice < 0.85) {
        const id = counterIn(hotSlot);
        await this.call('increment', id, async () => {
          return outcome(await this.router.query(id, 'UPDATE reshard_check_counters SET value = value + 1 WHERE id = $1', [id]));
        }, () => this.log.incrementsAcked.set(id, (this.log.incrementsAcked.get(id) ?? 0) + 1),
        () => this.log.incrementsUnknown.set(id, (this.log.incrementsUnknown.get(id) ?? 0) + 1));
      } else {
        const id = mine.splice(Math.floor(Math.random() * mine.length), 1)[0]!;
        await this.call('delete', id, async () => {
          return outcome(await this.router.query(id, 'DELETE FROM reshard_check_items WHERE id = $1', [id]));
        }, () => this.log.deletedAcked.add(id), () => this.log.deletedUnknown.add(id));
      }
      if (this.options.thinkMs) await new Promise((resolve) => setTimeout(resolve, this.options.thinkMs));
    }
  }

  private async call(kind: OperationKind, id: number, work: () => Promise<CallOutcome>, acked: () => void, unknown: () => void): Promise<void> {
    const startMs = this.now();
    const slot = slotOf('bigint', id, this.modulus);
    const before = this.router.routeOf(slot);
    try {
      const { asExpected, servedBy } = await work();
      if (!asExpected) {
        const after = this.router.routeOf(slot);
        this.log.anomalies.push(`${kind} of ${id} (slot ${slot}) was acknowledged but changed no row ` +
          `(route at start: ${before.owner}@${before.epoch}${before.frozen ? ' frozen' : ''}; served by: ${servedBy ? `${servedBy.owner}@${servedBy.epoch}` : '?'}; ` +
          `at end: ${after.owner}@${after.epoch}; ${Math.round(this.now() - startMs)} ms)`);
      }
      acked();
      this.log.samples.push({ kind, slot, startMs, latencyMs: this.now() - startMs, outcome: 'ok' });
    } catch (error) {
      unknown();
      const after = this.router.routeOf(slot);
      const sent = (error as { reshardRoute?: { owner: string; epoch: number } }).reshardRoute;
      this.log.errors.push(`${kind} of ${id} (slot ${slot}): ${error instanceof Error ? error.message : String(error)} ` +
        `(route at start: ${before.owner}@${before.epoch}${before.frozen ? ' frozen' : ''}; sent to: ${sent ? `${sent.owner}@${sent.epoch}` : '?'}; ` +
        `at end: ${after.owner}@${after.epoch}; ${Math.round(this.now() - startMs)} ms)`);
      this.log.samples.push({ kind, slot, startMs, latencyMs: this.now() - startMs, outcome: 'error' });
    }
  }
}
