import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { parseConnectionString, type ConninfoSources } from '../core/conninfo.js';
import type { ConnectionSettings } from '../core/connection.js';

/** This process's environment and files, for connection strings read here (the coordinator's or the router's). */
export function processConninfoSources(env: NodeJS.ProcessEnv = process.env): ConninfoSources {
  return {
    env,
    homeDir: homedir(),
    readFile: (path) => {
      try {
        return readFileSync(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
  };
}

/** A URL or key=value connection string, completed as libpq would complete it in this process. */
export function parseConnectionHere(text: string, what: string, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  return parseConnectionString(text, what, processConninfoSources(env));
}
