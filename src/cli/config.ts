import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import type { ConnectionSettings } from '../core/connection.js';
import { assertParamsValid } from '../core/conninfo.js';
import { badInput } from '../core/errors.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import { parseConnectionHere } from '../plumbing/conninfoSources.js';

/** The config file: where the catalog is, and node passwords (never stored in the catalog). */
const connectionObject = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(5432),
  database: z.string().min(1).default('postgres'),
  user: z.string().min(1).default('postgres'),
  password: z.string().optional(),
  /** libpq parameters: sslmode, sslrootcert, sslcert, sslkey, application_name, connect_timeout. */
  params: z.record(z.string(), z.string()).optional(),
}).strict();

export const configSchema = z.object({
  catalog: z.union([z.string().min(1), connectionObject]),
  passwords: z.record(z.string(), z.string()).default({}),
}).strict();

export type ReshardConfig = z.infer<typeof configSchema>;

export const DEFAULT_CONFIG_FILE = 'reshard.json';

export interface GlobalOptions {
  catalog?: string;
  config?: string;
}

/** A postgres:// URL or a key=value connection string, completed by PGSERVICE and the PG* variables as libpq would. */
export function parseUrlOption(url: string, what: string, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  return parseConnectionHere(url, what, env);
}

function readConfigFile(path: string): ReshardConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is not valid JSON (${(error as Error).message})`;
    throw badInput(`config file ${path} ${reason}`, 'pass --config with a JSON file like {"catalog": "postgres://user@host:5432/db"}');
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    throw badInput(`config file ${path} is invalid at ${where}: ${issue.message}`, 'see the README for the config file format');
  }
  return result.data;
}

/**
 * Where the catalog is, in order: --catalog, the config file (--config or
 * ./reshard.json), RESHARD_CATALOG, then the PG* environment variables.
 */
export function resolveAccess(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): ClusterAccess {
  const configPath = options.config ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  const config = configPath ? readConfigFile(configPath) : undefined;
  const passwords = config?.passwords ?? {};
  const lookup = (nodeName: string): string | undefined => passwords[nodeName];

  if (options.catalog) return { catalog: parseUrlOption(options.catalog, '--catalog', env), passwords: lookup };
  if (config) {
    if (typeof config.catalog === 'string') return { catalog: parseUrlOption(config.catalog, `"catalog" in ${configPath}`, env), passwords: lookup };
    const { params, ...address } = config.catalog;
    if (params) assertParamsValid(params, `"catalog" in ${configPath}`);
    return { catalog: { ...address, ...(params && Object.keys(params).length > 0 ? { params } : {}) }, passwords: lookup };
  }
  const fromEnv = env['RESHARD_CATALOG'];
  if (fromEnv) return { catalog: parseUrlOption(fromEnv, 'RESHARD_CATALOG', env), passwords: lookup };
  if (env['PGHOST'] || env['PGPORT'] || env['PGDATABASE'] || env['PGSERVICE']) {
    const catalog = parseUrlOption('', 'the PG* environment variables', env);
    return { catalog: { ...catalog, ...(env['PGPASSWORD'] ? { password: env['PGPASSWORD'] } : {}) }, passwords: lookup };
  }
  throw badInput('no catalog database was given', 'pass --catalog postgres://user@host:port/db, set RESHARD_CATALOG or PGHOST, or write reshard.json');
}
