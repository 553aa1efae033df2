import type pg from 'pg';
import type { NodeRecord } from '../catalog/nodes.js';
import { connectTo } from './connectNode.js';

/**
 * Passwords live outside the catalog: this looks one up by node name (from the
 * config file); when it returns undefined, libpq conventions apply
 * (PGPASSWORD, ~/.pgpass).
 */
export type PasswordLookup = (nodeName: string) => string | undefined;

export const noPasswords: PasswordLookup = () => undefined;

export async function connectNode(node: Pick<NodeRecord, 'name' | 'connection'>, passwords: PasswordLookup, applicationName = 'reshard'): Promise<pg.Client> {
  const password = passwords(node.name);
  return connectTo({ role: `node "${node.name}"`, connection: { ...node.connection, ...(password !== undefined ? { password } : {}) } }, applicationName);
}
