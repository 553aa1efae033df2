import { cancelMigration, pauseMigration, resumeMigrationControl, type ControlOutcome } from '../admin/controlMigration.js';
import { rollbackMigration } from '../admin/rollbackMigration.js';
import { ReshardError } from '../core/errors.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import { MOVE_CONCURRENCY_MAX_DEFAULT } from '../admin/rebalance.js';

export type DashboardAction = 'pause' | 'resume' | 'cancel' | 'rollback';

export const DASHBOARD_ACTIONS: readonly DashboardAction[] = ['pause', 'resume', 'cancel', 'rollback'];

/**
 * A rollback that has not failed within this time is answered 202 and goes
 * on in the dashboard's process: moving switched slots back is a migration of
 * its own (minutes), while refusals (a coordinator still runs it, nothing to
 * roll back) come within milliseconds and are answered with their error.
 */
const ROLLBACK_ANSWER_WAIT_MS = 1_500;

function outcomeJson(outcome: ControlOutcome): Record<string, unknown> {
  return { migration_id: outcome.migrationId, control: outcome.control, changed: outcome.changed, held: outcome.held };
}

/** Runs the dashboard's actions; one rollback at a time per dashboard. */
export class DashboardActions {
  private rollback: Promise<unknown> | undefined;

  constructor(private readonly access: ClusterAccess) {}

  /** Carries out an action; the answer is the JSON the API returns (snake_case, like the CLI's --json) and its status. */
  async run(action: DashboardAction): Promise<{ status: number; body: Record<string, unknown> }> {
    switch (action) {
      case 'pause': return { status: 200, body: outcomeJson(await pauseMigration(this.access)) };
      case 'resume': return { status: 200, body: outcomeJson(await resumeMigrationControl(this.access)) };
      case 'cancel': return { status: 200, body: outcomeJson(await cancelMigration(this.access)) };
      case 'rollback': return this.startRollback();
    }
  }

  private async startRollback(): Promise<{ status: number; body: Record<string, unknown> }> {
    if (this.rollback) throw new ReshardError('conflict', 'a rollback started from this dashboard is still running', 'follow it on the page; it shows as the running migration');
    const running = rollbackMigration(this.access, { emit: () => {}, moveConcurrencyMax: MOVE_CONCURRENCY_MAX_DEFAULT });
    this.rollback = running.finally(() => { this.rollback = undefined; });
    // The outcome is in the catalog (journal, migrations) for the page; nothing else waits for it.
    this.rollback.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      running.then((result) => ({ done: true as const, result })),
      new Promise<{ done: false }>((resolve) => { timer = setTimeout(() => resolve({ done: false }), ROLLBACK_ANSWER_WAIT_MS); }),
    ]).finally(() => clearTimeout(timer));
    if (!waited.done) return { status: 202, body: { started: true, message: 'the rollback goes on; switched slots move back as a new migration shown on this page' } };
    const { result } = waited;
    return {
      status: 200,
      body: { migration_id: result.migrationId, undone_slots: result.undoneSlots, moved_back_slots: result.movedBackSlots, move_back: result.moveBack ? { migration_id: result.moveBack.migrationId, state: result.moveBack.state } : null },
    };
  }
}
