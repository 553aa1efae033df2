import type pg from 'pg';
import type { AdoptionRecord } from '../catalog/adoptions.js';
import type { NodeRecord } from '../catalog/nodes.js';
import type { AdoptNames } from '../core/adoptNames.js';
import type { ConnectionSettings } from '../core/connection.js';
import type { SourceFence } from '../node/adoptSource.js';
import type { LogicalChangeStream } from '../node/logicalChangeStream.js';
import type { StepEvent } from './stepRunner.js';

/** Bounds of an adoption's waits. */
export interface AdoptLimits {
  /** Catch-up stops once a round over every source's stream finds at most this many changed keys. */
  catchupKeysMax: number;
  catchupTimeoutMs: number;
  /** Longest the fence of a source waits for in-flight writers on the table. */
  fenceLockTimeoutMs: number;
  /** Longest the initial copy of one source may take. */
  copyTimeoutMs: number;
}

export const ADOPT_LIMITS_DEFAULT: AdoptLimits = {
  catchupKeysMax: 500,
  catchupTimeoutMs: 600_000,
  fenceLockTimeoutMs: 10_000,
  copyTimeoutMs: 3_600_000,
};

/**
 * What the adoption's steps work on. Sessions are opened on first use and
 * owned by whoever runs the steps (`close` ends them all).
 */
export interface AdoptContext {
  adoption: AdoptionRecord;
  names: AdoptNames;
  modulus: number;
  /** The slot map's owners at the start (nothing moves slots while the adoption is the running migration). */
  owners: readonly string[];
  nodes: readonly NodeRecord[];
  definition: string;
  colocationGroup: string;
  limits: AdoptLimits;
  catalog: pg.ClientBase;
  source(index: number): Promise<pg.Client>;
  node(name: string): Promise<pg.Client>;
  /**
   * Source `index`'s change stream (its replication slot read over a
   * replication connection), opened on first use and kept between catch-up
   * rounds: the server then decodes each change once.
   */
  changeStream(index: number): Promise<LogicalChangeStream>;
  /**
   * Ends source `index`'s change stream, if open: before its slot is dropped
   * (a slot in use cannot be), and when lines were read from it that are not
   * confirmed (the next stream reads them again).
   */
  closeChangeStream(index: number): Promise<void>;
  /** How to reach a source, with its password if one is known (for replication and copy connections). */
  sourceConnection(index: number): ConnectionSettings;
  nodeConnection(name: string): ConnectionSettings;
  /** A source as messages name it: the node's name, else user@host:port/db. */
  sourceName(index: number): string;
  /**
   * What each source's fence read (WAL position, its marker, its row sums),
   * from the freeze; lost after a resume, when the sync writes a marker of
   * its own and the verification reads the sums again (both later than the
   * fence, hence as safe).
   */
  fences: Map<number, SourceFence>;
  /** Per source, whether it can log its running transactions on demand (PostgreSQL 16+, the privilege); asked once. */
  logsRunningTransactions: Map<number, boolean>;
  /**
   * Per source, whether its row sums are kept, when this run's stream step
   * started them (beside the owners' key build); the freeze then starts only
   * the owners'. Lost after a resume: the freeze starts both again.
   */
  sourceRowSumsKept?: boolean[];
  emit(event: StepEvent): void;
}
