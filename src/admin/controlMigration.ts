import { migrationIsHeld, runningMigration } from '../catalog/migrationRuns.js';
import { readControl, requestCancel, requestPause, requestResume, type ControlChange, type MigrationControl } from '../catalog/migrationControl.js';
import { assertCatalogCurrent } from '../catalog/schema.js';
import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';
import { withCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';

export interface ControlOutcome extends ControlChange {
  /** True when a coordinator runs the migration now, so the request takes effect at its next checkpoint. */
  held: boolean;
}

interface RunningTarget {
  migrationId: number;
  held: boolean;
  control: MigrationControl;
}

async function runningTarget(catalog: Queryable, verb: string): Promise<RunningTarget> {
  await assertCatalogCurrent(catalog);
  const running = await runningMigration(catalog);
  if (!running) throw new ReshardError('not_found', `no migration is running, so there is nothing to ${verb}`, 'see the last one with `reshard status`; start one with `reshard rebalance`');
  return { migrationId: running.id, held: await migrationIsHeld(catalog, running.id), control: await readControl(catalog, running.id) };
}

/** Holds the running migration before its next unit of work; work in flight finishes first. */
export async function pauseMigration(access: ClusterAccess): Promise<ControlOutcome> {
  return withCatalog(access, async (catalog) => {
    const target = await runningTarget(catalog, 'pause');
    if (!target.held) {
      throw new ReshardError('precondition', `migration ${target.migrationId} was interrupted: no coordinator runs it, so there is nothing to pause`, 'continue it with `reshard resume`, or leave it as it is');
    }
    if (target.control === 'cancel') {
      throw new ReshardError('conflict', `migration ${target.migrationId} is being cancelled`, 'wait for its rollback to finish (`reshard status`)');
    }
    return { ...(await requestPause(catalog, target.migrationId)), held: true };
  });
}

/**
 * Lets a paused migration that a coordinator holds go on. Undefined when
 * there is none: then `resume` means continuing an interrupted migration.
 */
export async function resumePausedMigration(access: ClusterAccess): Promise<ControlOutcome | undefined> {
  return withCatalog(access, async (catalog) => {
    await assertCatalogCurrent(catalog);
    const running = await runningMigration(catalog);
    if (!running || (await readControl(catalog, running.id)) !== 'pause' || !(await migrationIsHeld(catalog, running.id))) return undefined;
    return { ...(await requestResume(catalog, running.id)), held: true };
  });
}

/** `resume` for the dashboard: only a paused migration can be resumed there. */
export async function resumeMigrationControl(access: ClusterAccess): Promise<ControlOutcome> {
  const resumed = await resumePausedMigration(access);
  if (resumed) return resumed;
  const target = await withCatalog(access, (catalog) => runningTarget(catalog, 'resume'));
  if (!target.held) {
    throw new ReshardError('precondition', `migration ${target.migrationId} was interrupted: no coordinator runs it`, 'continue it with `reshard resume` on a machine that reaches the nodes');
  }
  return { migrationId: target.migrationId, control: target.control, changed: false, held: true };
}

/**
 * Stops the running migration: no new work starts, the moves that have not
 * switched are rolled back, and it ends `cancelled`. An interrupted migration
 * keeps the request until `reshard resume` runs it, which then rolls back.
 */
export async function cancelMigration(access: ClusterAccess): Promise<ControlOutcome> {
  return withCatalog(access, async (catalog) => {
    const target = await runningTarget(catalog, 'cancel');
    return { ...(await requestCancel(catalog, target.migrationId)), held: target.held };
  });
}
