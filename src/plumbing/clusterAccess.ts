import type pg from 'pg';
import type { ConnectionSettings } from '../core/connection.js';
import { connectTo } from './connectTo.js';
import type { PasswordLookup } from './connectNode.js';

/** How a command reaches the cluster: the catalog's connection and node passwords. */
export interface ClusterAccess {
  catalog: ConnectionSettings;
  passwords: PasswordLookup;
}

export function connectCatalog(access: Pick<ClusterAccess, 'catalog'>, applicationName = 'reshard'): Promise<pg.Client> {
  return connectTo({ role: 'catalog', connection: access.catalog }, applicationName);
}

/** Runs `work` with a catalog connection that is always closed afterwards. */
export async function withCatalog<T>(access: Pick<ClusterAccess, 'catalog'>, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connectCatalog(access);
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}
