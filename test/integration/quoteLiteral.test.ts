import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteLiteral } from '../../src/core/identifier.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';
import type pg from 'pg';

/** A literal reshard writes into SQL reads back as the same string, whatever the server's string settings. */
describe('quoteLiteral on real PostgreSQL', () => {
  let servers: TestServers | undefined;
  let client: pg.Client;

  beforeAll(async () => {
    servers = await startTestServers(1, 'quote');
    client = await connectTo(servers.servers[0]!.connection);
  }, 120_000);

  afterAll(async () => {
    await client?.end();
    await servers?.stop();
  });

  for (const conforming of ['on', 'off'] as const) {
    it(`round-trips quotes, backslashes and any other text with standard_conforming_strings = ${conforming}`, async () => {
      await client.query(`SET standard_conforming_strings = ${conforming}`);
      await client.query('SET escape_string_warning = off');
      const text = fc.string({ unit: fc.constantFrom('a', "'", '\\', '"', 'é', ' ', '\n', 'n', '0', '$') , maxLength: 24 });
      await fc.assert(fc.asyncProperty(text, async (value) => {
        const result = await client.query<{ value: string }>(`SELECT ${quoteLiteral(value)}::text AS value`);
        expect(result.rows[0]!.value).toBe(value);
      }), { numRuns: 300 });
      expect((await client.query<{ v: string }>(`SELECT ${quoteLiteral("it's C:\\temp\\n")}::text AS v`)).rows[0]!.v).toBe("it's C:\\temp\\n");
    });
  }
});
