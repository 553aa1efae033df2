import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { connectTo } from './connectTo.js';

/**
 * Passwords live outside the catalog: this looks one up by node name (from the
 * config file); when it returns undefined, libpq conventions apply
 * (PGPASSWORD, ~/.pgpass).
 */
export type PasswordLookup = (nodeName: string) => string | undefined;

export const noPasswords: PasswordLookup = () => undefined;

/** What a connection to a node needs: its name (for its password and messages) and its address. */
export interface NodeAddress {
  name: string;
  connection: ConnectionSettings;
}

export async function connectNode(node: NodeAddress, passwords: PasswordLookup, applicationName = 'reshard'): Promise<pg.Client> {
  const password = passwords(node.name);
  return connectTo({ role: `node "${node.name}"`, connection: { ...node.connection, ...(password !== undefined ? { password } : {}) } }, applicationName);
}
