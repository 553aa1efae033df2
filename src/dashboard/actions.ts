import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cancelMigration, pauseMigration, resumeMigrationControl, type ControlOutcome } from '../admin/controlMigration.js';
import { ReshardError } from '../core/errors.js';
import type { ClusterAccess } from '../coordinator/catalogAccess.js';

export type DashboardAction = 'pause' | 'resume' | 'cancel' | 'rollback';

export const DASHBOARD_ACTIONS: readonly DashboardAction[] = ['pause', 'resume', 'cancel', 'rollback'];

/** An action the server cannot carry out in this build: answered 501. */
export class ActionUnavailable extends Error {
  constructor(readonly action: DashboardAction, readonly fix: string) {
    super(`${action} is not available in this build of reshard`);
  }
}

/** Where `reshard rollback` will live; the dashboard offers it once that module is there. */
const ROLLBACK_MODULE = new URL('../admin/rollbackMigration.js', import.meta.url);

export function rollbackAvailable(): boolean {
  // Under tsx/vitest the module is a .ts file next to this one; in dist it is .js.
  const path = fileURLToPath(ROLLBACK_MODULE);
  return existsSync(path) || existsSync(path.replace(/\.js$/, '.ts'));
}

function outcomeJson(outcome: ControlOutcome): Record<string, unknown> {
  return { migration_id: outcome.migrationId, control: outcome.control, changed: outcome.changed, held: outcome.held };
}

/** Carries out an action; the answer is the JSON the API returns (snake_case, like the CLI's --json). */
export async function runAction(access: ClusterAccess, action: DashboardAction): Promise<Record<string, unknown>> {
  switch (action) {
    case 'pause': return outcomeJson(await pauseMigration(access));
    case 'resume': return outcomeJson(await resumeMigrationControl(access));
    case 'cancel': return outcomeJson(await cancelMigration(access));
    case 'rollback': {
      if (!rollbackAvailable()) throw new ActionUnavailable('rollback', 'use cancel to stop a running migration and roll back its moves that have not switched');
      // Loaded by path so this build does not depend on a module another change adds.
      const module = (await import(ROLLBACK_MODULE.href)) as { rollbackMigration?: (access: ClusterAccess) => Promise<Record<string, unknown>> };
      if (typeof module.rollbackMigration !== 'function') {
        throw new ReshardError('unsupported', 'this build of reshard has no rollbackMigration(access) to call', 'use cancel, or `reshard rollback` from the command line');
      }
      return module.rollbackMigration(access);
    }
  }
}
