import type pg from 'pg';
import type { MoveRecord } from '../catalog/migrationRuns.js';
import type { NodeRecord } from '../catalog/nodes.js';
import type { CopyGate } from '../node/copyMeter.js';
import type { SlotTable } from '../node/slotPartitions.js';
import { ROUTE_HOLDERS_WAIT_MS_DEFAULT } from '../node/slotState.js';
import type { PasswordLookup } from '../plumbing/connectNode.js';
import type { MigrationEventSink } from '../plumbing/migrationEvents.js';
import { ROUTER_ACK_WAIT_MS_DEFAULT } from './freezeSlot.js';

// What an online batch is and what bounds it: shared by the batch's run, its steps and its stream.

/** Bounds of the online mover; every wait has one. */
export interface OnlineLimits {
  /** Initial copy of the whole batch. */
  syncTimeoutMs: number;
  /** Catch-up is done when the apply worker is this close to the source's WAL. */
  catchupLagBytesMax: number;
  catchupTimeoutMs: number;
  /**
   * Longest a slot's freeze may spend waiting (routers, fence, replay, the
   * attach lock) before its cutover is abandoned (unfrozen, retried). The
   * verification's scan is not a wait: its time grows with the slot's size,
   * and counting it made every slot above a few hundred MB fail its cutover.
   */
  freezeBudgetMs: number;
  finalSyncPollMs: number;
  freezeAttemptsMax: number;
  /** Parallel COPY streams of one batch's initial copy. */
  copyLanes: number;
  /** Longest the freeze waits for routers' acknowledgements (an optimisation, never needed for correctness). */
  routerAckWaitMs: number;
  /** Longest the fence and the switch wait for transactions left open on the slot before ending them. */
  routeHoldersWaitMs: number;
  /**
   * Slots of one batch cut over together: one attach, one freeze (one epoch),
   * one fence, one replay wait, one switch for all of them; each slot's pause
   * is its group's. 1 by default: on the 256-slot bench (2 cores, quiet),
   * groups of 2, 4 and 8 moved the data no faster (rebalance 12.6–14.6 s
   * against 13.3 s slot by slot) while the group's fence waited for more
   * in-flight work (pause p99 124–230 ms against 93 ms). Larger groups pay
   * off where a cutover's round trips, not its waits, dominate.
   */
  cutoverSlotsMax: number;
  /**
   * A batch cuts over as soon as its copy has caught up, while other batches
   * still copy (else every copy of the round ends first). Off by default: on
   * the 256-slot bench (2 cores, CPU-bound) the copies then ran slower by as
   * much as the cutover tail shrank (rebalance 15.0–15.8 s against
   * 13.4–15.0 s), and freezes waited on a subscription slowed by the copies
   * (replay waits up to 196 ms; pause p99 201–239 ms against 74–193 ms).
   */
  cutoverWhileCopying: boolean;
}

export const ONLINE_LIMITS_DEFAULT: OnlineLimits = {
  syncTimeoutMs: 30 * 60_000,
  catchupLagBytesMax: 256 * 1024,
  catchupTimeoutMs: 5 * 60_000,
  freezeBudgetMs: 3_000,
  finalSyncPollMs: 3,
  freezeAttemptsMax: 3,
  copyLanes: 2,
  routerAckWaitMs: ROUTER_ACK_WAIT_MS_DEFAULT,
  routeHoldersWaitMs: ROUTE_HOLDERS_WAIT_MS_DEFAULT,
  cutoverSlotsMax: 1,
  cutoverWhileCopying: false,
};

/** Moves between one source and one target that share a publication and a subscription. */
export interface OnlineBatch {
  migrationId: number;
  /** Publication, subscription and replication slot name. */
  name: string;
  source: NodeRecord;
  target: NodeRecord;
  moves: MoveRecord[];
  modulus: number;
  tables: readonly SlotTable[];
}

export interface OnlineBatchConnections {
  source: pg.ClientBase;
  target: pg.ClientBase;
  catalog: pg.ClientBase;
}

export interface OnlineBatchResult {
  /** Moves that reached the switch, with the write pause each slot saw (freeze → switch). */
  switched: { slot: number; pauseMs: number; rows: number; bytes: number }[];
}

export interface OnlineBatchOptions {
  emit: MigrationEventSink;
  limits: OnlineLimits;
  passwords: PasswordLookup;
  /** Paces the initial copy (rate cap, holds while replication lags); unpaced when absent. */
  copyGate?: CopyGate;
}
