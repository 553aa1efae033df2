import type { Duplex, DuplexOptions } from 'node:stream';
import type pg from 'pg';
import { both as copyBoth } from 'pg-copy-streams';
import type { ConnectionSettings } from '../core/connection.js';
import { ReshardError } from '../core/errors.js';
import { quoteIdent } from '../core/identifier.js';
import { lsnText, lsnValue } from '../core/lsn.js';
import { openClient } from '../plumbing/connectTo.js';
import { log } from '../plumbing/log.js';
import type { Queryable } from '../plumbing/queryable.js';
import { sleep } from '../plumbing/waitFor.js';

// pg-copy-streams ships copy-both (COPY BOTH, the replication protocol's mode); its type declarations do not name it.
declare module 'pg-copy-streams' {
  export function both(text: string, options?: DuplexOptions & { alignOnCopyDataFrame?: boolean }): Duplex & pg.Submittable;
}

/** One line of test_decoding's output and the WAL position it came from (a COMMIT's: the end of its record). */
export interface ChangeLine {
  lsn: string;
  data: string;
}

const logger = log('change-stream');

/** Lines held in memory before the stream stops reading the socket (the walsender then waits: TCP's backpressure). */
const LINES_HELD_MAX = 100_000;
/** Longest the walsender of an earlier, lost connection may take to end once told to. */
const STALE_WALSENDER_END_MS = 5_000;
/** The replication protocol's clock: microseconds since 2000-01-01 UTC. */
const POSTGRES_EPOCH_MS = Date.UTC(2000, 0, 1);

/**
 * A logical replication slot (test_decoding) read as a stream over a
 * replication connection (START_REPLICATION), as a subscription's walsender
 * serves it: the server decodes each change once, where a peek through SQL
 * decodes again from the slot's restart point every time — on PostgreSQL
 * before 16, up to 15 s of WAL per peek, inside the adoption's write pause.
 * The slot moves on only when `confirm` says so (standby status updates), so
 * lines read but not confirmed are sent again to the next stream opened on
 * the slot, as a peek would show them again.
 */
export class LogicalChangeStream {
  private readonly lines: ChangeLine[] = [];
  private failure: unknown;
  private ended = false;
  private wake: (() => void) | undefined;
  private closed = false;

  private constructor(
    private readonly client: pg.Client,
    private readonly duplex: Duplex,
    private readonly what: string,
    private confirmed: bigint,
  ) {
    duplex.on('data', (chunk: Buffer) => this.receive(chunk));
    duplex.on('error', (error: unknown) => this.stop(error));
    duplex.on('end', () => this.stop(undefined));
    duplex.on('close', () => this.stop(undefined));
  }

  /**
   * Starts streaming `slotName` from its confirmed position. `control` is an
   * ordinary session on the same server: it reads where the slot is and ends
   * the walsender of an earlier connection of ours that still holds the slot
   * (a connection lost without a FIN keeps it until wal_sender_timeout).
   */
  static async open(source: ConnectionSettings, control: Queryable, slotName: string, what: string): Promise<LogicalChangeStream> {
    const confirmed = await releasedSlotPosition(control, slotName, what);
    const client = await openClient(source, 'reshard changes', { replication: 'database' } as Partial<pg.ClientConfig>, what);
    const duplex = client.query(copyBoth(
      `START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL ${lsnText(confirmed)} ("include-xids" '0', "skip-empty-xacts" '1')`,
      { alignOnCopyDataFrame: true },
    ));
    return new LogicalChangeStream(client, duplex, what, confirmed);
  }

  /**
   * Up to `linesMax` lines received and not yet taken, waiting at most
   * `waitMs` for the first one (none after that: an empty array).
   */
  async take(linesMax: number, waitMs: number): Promise<ChangeLine[]> {
    if (this.lines.length === 0 && !this.ended) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.wake = undefined;
          resolve();
        }, waitMs);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
    if (this.lines.length === 0 && this.ended) throw this.endedError();
    const taken = this.lines.splice(0, linesMax);
    if (this.duplex.isPaused() && this.lines.length < LINES_HELD_MAX / 2) this.duplex.resume();
    return taken;
  }

  /** Every change up to `lsn` (a COMMIT line's) is applied: the slot may move past it. */
  confirm(lsn: string): void {
    const value = lsnValue(lsn);
    if (value <= this.confirmed) return;
    this.confirmed = value;
    this.sendStatus();
  }

  /** Ends the connection: its walsender ends and releases the slot (within milliseconds on a live link). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    this.wake?.();
    await this.client.end().catch(() => {});
  }

  private receive(chunk: Buffer): void {
    const kind = chunk[0];
    if (kind === 0x77 /* 'w': XLogData */) {
      // Header: its WAL start, the server's WAL end, its clock (8 bytes each); then the plugin's output.
      this.lines.push({ lsn: lsnText(chunk.readBigUInt64BE(1)), data: chunk.toString('utf8', 25) });
      if (this.lines.length >= LINES_HELD_MAX) this.duplex.pause();
      this.wake?.();
    } else if (kind === 0x6b /* 'k': keepalive */ && chunk[17] === 1) {
      // The walsender asks for an answer now (else it ends the connection at wal_sender_timeout).
      this.sendStatus();
    }
  }

  /** A standby status update: received, flushed and applied all at the confirmed position. */
  private sendStatus(): void {
    if (this.closed || this.ended) return;
    const status = Buffer.alloc(34);
    status.write('r', 0, 'latin1');
    status.writeBigUInt64BE(this.confirmed, 1);
    status.writeBigUInt64BE(this.confirmed, 9);
    status.writeBigUInt64BE(this.confirmed, 17);
    status.writeBigInt64BE(BigInt(Date.now() - POSTGRES_EPOCH_MS) * 1000n, 25);
    status.writeUInt8(0, 33);
    this.duplex.write(status);
  }

  private stop(error: unknown): void {
    if (error !== undefined && this.failure === undefined) this.failure = error;
    this.ended = true;
    this.wake?.();
  }

  private endedError(): unknown {
    if (this.failure !== undefined && !this.closed) {
      const message = this.failure instanceof Error ? this.failure.message : String(this.failure);
      return new ReshardError('unreachable', `the change stream of ${this.what} failed: ${message}`, 'check the source\'s logs; then `reshard resume`', { cause: this.failure });
    }
    return new ReshardError('unreachable', `the change stream of ${this.what} ended`, 'check that the source runs; then `reshard resume`');
  }
}

/**
 * The slot's confirmed position, once no walsender holds it: one that does is
 * an earlier connection's (an adoption runs in one process at a time, under
 * its migration's lock), and is ended.
 */
async function releasedSlotPosition(control: Queryable, slotName: string, what: string): Promise<bigint> {
  const slot = await endSlotHolder(control, slotName, what);
  if (!slot) throw new ReshardError('not_found', `replication slot ${slotName} is gone from ${what}`, 'run `reshard rollback`, then adopt the table again');
  if (slot.confirmed === null) throw new ReshardError('precondition', `replication slot ${slotName} on ${what} has no confirmed position`, 'run `reshard rollback`, then adopt the table again');
  return lsnValue(slot.confirmed);
}

/**
 * Ends the walsender that holds `slotName`, if one does, and waits (a bound)
 * until the slot is free: only for a slot no one else streams (an
 * adoption's, under its migration's lock), whose holder is a connection of an
 * earlier run that the server has not noticed is gone. Returns the slot's
 * confirmed position, or undefined if there is no such slot.
 */
export async function endSlotHolder(control: Queryable, slotName: string, what: string): Promise<{ confirmed: string | null } | undefined> {
  const deadline = performance.now() + STALE_WALSENDER_END_MS;
  for (;;) {
    // Read and ended in one statement, and only a walsender: the pid named is the slot's holder at that moment.
    const result = await control.query<{ confirmed: string | null; active_pid: number | null; backend_type: string | null; application_name: string | null; ended: boolean | null }>(
      `SELECT s.confirmed_flush_lsn::text AS confirmed, s.active_pid, a.backend_type, a.application_name,
              CASE WHEN a.backend_type = 'walsender' THEN pg_terminate_backend(s.active_pid) END AS ended
         FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
        WHERE s.slot_name = $1 AND s.database = current_database()`, [slotName],
    );
    const slot = result.rows[0];
    if (!slot || slot.active_pid === null) return slot && { confirmed: slot.confirmed };
    if (slot.ended) logger.warn({ slot: slotName, source: what, pid: slot.active_pid, application: slot.application_name }, 'ended the walsender of an earlier connection that still held the slot');
    if (performance.now() >= deadline) {
      throw new ReshardError('timeout', `replication slot ${slotName} on ${what} is still held by process ${slot.active_pid} after ${STALE_WALSENDER_END_MS} ms`,
        `end it on the source with SELECT pg_terminate_backend(${slot.active_pid}); then run the command again`);
    }
    await sleep(20);
  }
}
