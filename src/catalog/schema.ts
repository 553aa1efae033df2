import type pg from 'pg';
import { ReshardError } from '../core/errors.js';
import type { Queryable } from '../plumbing/queryable.js';
import { CATALOG_SCHEMA_VERSIONS, CATALOG_SCHEMA_VERSION_LATEST } from './schemaVersions.js';

/** Serialises concurrent `reshard init` runs against one catalog. */
const SCHEMA_LOCK_KEY = 0x7265_7368; // "resh"

/**
 * Creates or upgrades the reshard schema to the latest version, in one
 * transaction; returns the versions it applied.
 */
export async function upgradeCatalogSchema(client: pg.ClientBase): Promise<number[]> {
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK_KEY]);
    await client.query('CREATE SCHEMA IF NOT EXISTS reshard');
    await client.query(`CREATE TABLE IF NOT EXISTS reshard.schema_version (
      version int PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const installed = await installedVersion(client);
    if (installed > CATALOG_SCHEMA_VERSION_LATEST) throw newerCatalogError(installed);
    for (const step of CATALOG_SCHEMA_VERSIONS) {
      if (step.version <= installed) continue;
      await client.query(step.sql);
      await client.query('INSERT INTO reshard.schema_version (version, description) VALUES ($1, $2)', [step.version, step.description]);
      applied.push(step.version);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  return applied;
}

async function installedVersion(db: Queryable): Promise<number> {
  const result = await db.query<{ version: number | null }>('SELECT max(version) AS version FROM reshard.schema_version');
  return result.rows[0]?.version ?? 0;
}

function newerCatalogError(installed: number): ReshardError {
  return new ReshardError(
    'unsupported',
    `the catalog schema is version ${installed}, newer than this reshard understands (${CATALOG_SCHEMA_VERSION_LATEST})`,
    'upgrade reshard',
  );
}

/** Every command but `init` starts here: the catalog must exist and be current. */
export async function assertCatalogCurrent(db: Queryable): Promise<void> {
  const exists = await db.query<{ present: boolean }>(
    "SELECT to_regclass('reshard.schema_version') IS NOT NULL AS present",
  );
  if (!exists.rows[0]?.present) {
    throw new ReshardError('precondition', 'the catalog database has no reshard schema', 'run `reshard init --slots <M>` first');
  }
  const installed = await installedVersion(db);
  if (installed > CATALOG_SCHEMA_VERSION_LATEST) throw newerCatalogError(installed);
  if (installed < CATALOG_SCHEMA_VERSION_LATEST) {
    throw new ReshardError(
      'precondition',
      `the catalog schema is version ${installed}, older than ${CATALOG_SCHEMA_VERSION_LATEST}`,
      'run `reshard init` to upgrade it',
    );
  }
}
