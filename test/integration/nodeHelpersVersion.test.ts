import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installNodeHelpers, NODE_SCHEMA } from '../../src/node/nodeHelpers.js';
import type { Queryable } from '../../src/plumbing/queryable.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/**
 * The node helpers are installed once per version: a node that has them is
 * left alone (one read), so a migration's start does not rewrite functions
 * every routed call plans with; a node with another version, or none, gets
 * them all, as does a node where one of its functions or tables was
 * dropped by hand.
 */
describe('node helpers, installed once per version', () => {
  let servers: TestServers;
  let client: pg.Client;
  let statements: string[];
  const counting = (): Queryable => ({ query: (text: string, values?: unknown[]) => { statements.push(text); return client.query(text, values); } }) as Queryable;

  beforeAll(async () => {
    servers = await startTestServers(1, 'nh', undefined, 'stock');
    client = await connectTo(servers.servers[0]!.connection);
  });
  afterAll(async () => {
    await client?.end();
    await servers?.stop();
  });

  it('installs everything on a bare node, then only reads the version; another version is installed again', async () => {
    statements = [];
    await installNodeHelpers(counting());
    const full = statements.length;
    expect(full).toBeGreaterThan(10);
    const comment = (await client.query<{ comment: string }>(`SELECT obj_description('${NODE_SCHEMA}'::regnamespace, 'pg_namespace') AS comment`)).rows[0]!.comment;
    expect(comment).toMatch(/^reshard helpers [0-9a-f]{16}$/);
    const procChanged = async (): Promise<string> => (await client.query<{ xmin: string }>(`SELECT xmin::text FROM pg_proc WHERE proname = 'refuse_route'`)).rows[0]!.xmin;
    const before = await procChanged();

    statements = [];
    await installNodeHelpers(counting());
    expect(statements).toHaveLength(1);
    // The function's catalog row was not rewritten.
    expect(await procChanged()).toBe(before);

    // A function dropped by hand (an operator's slip), the version still there: all installed again.
    await client.query(`DROP FUNCTION ${NODE_SCHEMA}.settle_route_leases(bigint, integer, integer)`);
    statements = [];
    await installNodeHelpers(counting());
    expect(statements).toHaveLength(full);
    expect((await client.query(`SELECT 1 FROM pg_proc WHERE proname = 'settle_route_leases'`)).rowCount).toBe(1);
    // So is a table.
    await client.query(`DROP TABLE ${NODE_SCHEMA}.slot_state CASCADE`);
    statements = [];
    await installNodeHelpers(counting());
    expect(statements).toHaveLength(full);
    expect((await client.query(`SELECT to_regclass('${NODE_SCHEMA}.slot_state') IS NOT NULL AS present`)).rows[0]).toEqual({ present: true });
    statements = [];
    await installNodeHelpers(counting());
    expect(statements).toHaveLength(1);

    // An older build's helpers (another version), one of them gone: all installed again.
    await client.query(`COMMENT ON SCHEMA ${NODE_SCHEMA} IS 'reshard helpers 0000000000000000'`);
    await client.query(`DROP FUNCTION ${NODE_SCHEMA}.reject_write() CASCADE`);
    statements = [];
    await installNodeHelpers(counting());
    expect(statements).toHaveLength(full);
    expect((await client.query(`SELECT 1 FROM pg_proc WHERE proname = 'reject_write'`)).rowCount).toBe(1);
    expect((await client.query<{ comment: string }>(`SELECT obj_description('${NODE_SCHEMA}'::regnamespace, 'pg_namespace') AS comment`)).rows[0]!.comment).toBe(comment);
  });
});
