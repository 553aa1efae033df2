import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { slotOf } from '../../src/core/hash.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { sleep } from '../../src/plumbing/waitFor.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { startTestServers, type TestServers } from '../support/servers.js';
import { TcpProxy } from '../support/tcpProxy.js';

/**
 * Adopt's fault cells beyond the coordinator's SIGKILL (adoptTable.test.ts):
 * as an adopt step begins, the coordinator is paused and the old table's
 * server is stopped (`source`), an owner node is stopped (`node`), or the
 * links to both are cut (`net-cut`); 2 s later the server restarts or the
 * link heals. Then `reshard resume` if the adoption did not end by itself.
 * Direct writers on the old table run throughout. Whatever the way it ends
 * — completed, or undone before the switch — every acknowledged write is
 * exactly once where the table now lives, and nothing of the adoption is
 * left behind. `npm test` runs one cell per victim; RESHARD_ADOPT_FAULTS=all
 * every step × victim; RESHARD_ADOPT_FAULTS=sync:node,… picks cells.
 */
type Victim = 'source' | 'node' | 'net-cut';
const STEPS = ['prepare', 'stream', 'freeze', 'sync', 'verify', 'attach', 'switch', 'cleanup'] as const;
type Step = typeof STEPS[number];
interface Cell { step: Step; victim: Victim }

const REPRESENTATIVE: Cell[] = [
  { step: 'stream', victim: 'source' },
  { step: 'sync', victim: 'node' },
  { step: 'attach', victim: 'net-cut' },
];
const ALL: Cell[] = STEPS.flatMap((step) => (['source', 'node', 'net-cut'] as Victim[]).map((victim) => ({ step, victim })));

function selectedCells(): Cell[] {
  const wanted = process.env['RESHARD_ADOPT_FAULTS'];
  if (!wanted) return REPRESENTATIVE;
  if (wanted === 'all') return ALL;
  return wanted.split(',').map((spec) => {
    const [step, victim] = spec.trim().split(':');
    const cell = ALL.find((candidate) => candidate.step === step && candidate.victim === victim);
    if (!cell) throw new Error(`RESHARD_ADOPT_FAULTS: no cell ${spec} (step:victim)`);
    return cell;
  });
}

const SLOTS = 16;
const ROWS = 5_000;
const FAULT_MS = 2_000;
const QUERY_TIMEOUT_MS = 4_000;
const CHILD_EXIT_TIMEOUT_MS = 90_000;

async function sql(connection: LocalServer['connection'], text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ ...connection });
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}

/** A writer on the old table: inserts and increments its counter row; a lost connection makes an outcome unknown, the fence ends it. */
function startWriter(connection: LocalServer['connection'], table: string, counterId: number, firstId: number) {
  const tally = { inserted: [] as number[], uncertainInserts: [] as number[], increments: 0, uncertainIncrements: 0, fenced: false, errors: [] as string[] };
  let running = true;
  const pool = new pg.Pool({ ...connection, max: 1 });
  pool.on('error', () => {});
  const loop = (async () => {
    let next = firstId;
    while (running) {
      const id = next++;
      const outcome = async (text: string, params: unknown[]): Promise<'ok' | 'fenced' | 'unknown'> => {
        try {
          await pool.query(text, params);
          return 'ok';
        } catch (error) {
          if ((error as { code?: string }).code === 'RSM01') return 'fenced';
          tally.errors.push((error as Error).message);
          return 'unknown';
        }
      };
      const inserted = await outcome(`INSERT INTO ${table} (id, balance) VALUES ($1, 0)`, [id]);
      if (inserted === 'fenced') { tally.fenced = true; return; }
      if (inserted === 'ok') tally.inserted.push(id); else tally.uncertainInserts.push(id);
      const incremented = await outcome(`UPDATE ${table} SET balance = balance + 1 WHERE id = $1`, [counterId]);
      if (incremented === 'fenced') { tally.fenced = true; return; }
      if (incremented === 'ok') tally.increments++; else tally.uncertainIncrements++;
      await sleep(incremented === 'unknown' || inserted === 'unknown' ? 200 : 3);
    }
  })();
  return { tally, stop: async () => { running = false; await loop; await pool.end().catch(() => {}); } };
}

describe('adopt fault cells: a server stopped or a link cut as an adopt step begins, then resume', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let env: Record<string, string>;
  const proxies = new Map<string, TcpProxy>();
  let nodes: LocalServer[];
  let source: LocalServer;

  beforeAll(async () => {
    // Servers crash on purpose here: acknowledged commits must survive it (see faultMatrix.test.ts).
    cluster = await startTestServers(4, 'adf', { synchronous_commit: 'on' });
    nodes = cluster.servers.slice(0, 3);
    source = cluster.servers[3]!;
    // The catalog (n1) is reached directly; n2, n3 and the source through proxies, by reshard and by every node.
    for (const server of [nodes[1]!, nodes[2]!, source]) proxies.set(server.name, await TcpProxy.start(server.port));
    const via = (server: LocalServer): LocalServer['connection'] => ({ ...server.connection, port: proxies.get(server.name)?.port ?? server.connection.port });
    access = { catalog: nodes[0]!.connection, passwords: noPasswords };
    env = { RESHARD_CATALOG: catalogUrl(nodes[0]!.connection), RESHARD_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS) };
    await initCluster(access, SLOTS);
    for (const [index, node] of nodes.entries()) await addNode(access, { name: `n${index + 1}`, connection: via(node) });
  }, 120_000);
  afterAll(async () => {
    for (const proxy of proxies.values()) await proxy.close().catch(() => {});
    await cluster?.stop();
  });

  selectedCells().forEach((cell, index) => {
    it(`${cell.step} × ${cell.victim}`, async () => {
      const table = `fault_${cell.step}_${cell.victim.replace('-', '_')}`;
      const sourceUrl = catalogUrl({ ...source.connection, port: proxies.get(source.name)!.port });
      await sql(source.connection, `CREATE TABLE ${table} (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text)`);
      await sql(source.connection, `INSERT INTO ${table} SELECT g, 0, 'seed' FROM generate_series(1, ${ROWS}) g`);
      // Writers reach the old table directly: the application is not behind reshard's proxies.
      const writers = [1, 2].map((counter) => startWriter(source.connection, table, counter, 1_000_000 * (index + 1) + counter * 100_000));

      const victimServer = cell.victim === 'source' ? source : nodes[1]!;
      const recover = async (): Promise<void> => {
        await victimServer.start();
        for (const proxy of proxies.values()) proxy.heal();
      };
      const child = spawn(process.execPath, [RESHARD_BIN, 'table', 'adopt', table, '--from', sourceUrl, '--key', 'id'], {
        env: { ...process.env, PGHOST: '', PGPORT: '', PGDATABASE: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      let output = '';
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
      let injected: Promise<void> | undefined;
      let recovered: Promise<void> | undefined;
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (injected || !output.includes(`step ${cell.step}\n`)) return;
        injected = (async () => {
          // Paused, the coordinator cannot finish the step before the fault lands.
          child.kill('SIGSTOP');
          try {
            if (cell.victim === 'net-cut') {
              proxies.get(source.name)!.cut();
              proxies.get(nodes[1]!.name)!.cut();
            } else {
              await victimServer.stop('immediate');
            }
          } finally {
            child.kill('SIGCONT');
          }
          recovered = sleep(FAULT_MS).then(recover);
        })();
      });
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), CHILD_EXIT_TIMEOUT_MS); })]);
      clearTimeout(timer);
      if (code === 'hung') child.kill('SIGKILL');
      expect(code, `the coordinator hung after the fault; stdout: ${output}`).not.toBe('hung');
      await injected;
      expect(injected, `step ${cell.step} never began; stdout: ${output}`).toBeDefined();
      await recovered;
      await recover();

      const stateOf = async (): Promise<{ migration: string; adoption: string }> => (await sql(nodes[0]!.connection,
        'SELECT m.state AS migration, a.state AS adoption FROM reshard.migration m JOIN reshard.adoption a ON a.migration_id = m.id WHERE a.table_name = $1', [table])).rows[0] as { migration: string; adoption: string };
      const first = await stateOf();
      // A run that completed the adoption says so: exit 0, not a failure after the fact.
      if (first.migration === 'completed') expect(code, `completed, yet exit ${code}: ${stderr.trim().split('\n').slice(-1)[0] ?? ''}`).toBe(0);
      let resumed = '';
      if (first.migration !== 'completed' && first.migration !== 'rolled_back') {
        const ran = await runCli(['resume', '--json'], env, 180_000);
        resumed = `resume exit ${ran.code}: ${ran.stderr.trim().split('\n').slice(-1)[0] ?? ''}`;
        expect(ran.code, `first run: exit ${code}, ${first.migration}/${first.adoption}; ${stderr.trim().split('\n').slice(-1)[0] ?? ''}; ${resumed}`).toBe(0);
      }
      const final = await stateOf();
      // Writers run a moment longer: on a completed adoption they have met the fence; on an undone one they write on.
      await sleep(300);
      for (const writer of writers) await writer.stop();
      process.stdout.write(`adopt ${cell.step} × ${cell.victim}: first run exit ${code} (${first.migration}/${first.adoption}), ${resumed || 'no resume'}, final ${final.migration}/${final.adoption}\n`);

      const acknowledged = writers.flatMap((writer) => writer.tally.inserted);
      const uncertain = new Set(writers.flatMap((writer) => writer.tally.uncertainInserts));
      const byId = new Map<number, number[]>();
      const { owners } = await withCatalog(access, (catalog) => readSlotMap(catalog));
      if (final.migration === 'completed') {
        for (const writer of writers) expect(writer.tally.fenced, 'a direct writer met the fence').toBe(true);
        for (const [nodeIndex, node] of nodes.entries()) {
          for (const row of (await sql(node.connection, `SELECT id::int AS id, balance::int AS balance FROM ${table}`)).rows as { id: number; balance: number }[]) {
            byId.set(row.id, [...(byId.get(row.id) ?? []), row.balance]);
            expect(owners[slotOf('bigint', row.id, SLOTS)], `id ${row.id} on its owner`).toBe(`n${nodeIndex + 1}`);
          }
        }
        expect((await sql(source.connection, 'SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBe(0);
        for (const node of nodes) expect((await sql(node.connection, `SELECT to_regclass('${table}__adopting') IS NULL AS gone`)).rows[0].gone).toBe(true);
      } else {
        // Undone before the switch: the old table is the table again, unfenced, and nothing of the adoption is on the nodes.
        expect(final.migration).toBe('rolled_back');
        for (const row of (await sql(source.connection, `SELECT id::int AS id, balance::int AS balance FROM ${table}`)).rows as { id: number; balance: number }[]) {
          byId.set(row.id, [...(byId.get(row.id) ?? []), row.balance]);
        }
        await sql(source.connection, `INSERT INTO ${table} (id) VALUES (999999999)`);
        for (const node of nodes) expect((await sql(node.connection, `SELECT to_regclass('${table}') IS NULL AND to_regclass('${table}__adopting') IS NULL AS gone`)).rows[0].gone).toBe(true);
        expect((await sql(source.connection, 'SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBe(0);
      }
      for (const [id, copies] of byId) expect(copies.length, `id ${id} once`).toBe(1);
      for (const id of acknowledged) expect(byId.has(id), `acknowledged insert ${id}`).toBe(true);
      const written = [...byId.keys()].filter((id) => id > ROWS);
      for (const id of written) expect(acknowledged.includes(id) || uncertain.has(id), `id ${id} was written by a writer`).toBe(true);
      expect(byId.size).toBeGreaterThanOrEqual(ROWS + acknowledged.length);
      for (const [position, writer] of writers.entries()) {
        const balance = byId.get(position + 1)![0]!;
        expect(balance, `counter ${position + 1}`).toBeGreaterThanOrEqual(writer.tally.increments);
        expect(balance, `counter ${position + 1}`).toBeLessThanOrEqual(writer.tally.increments + writer.tally.uncertainIncrements);
      }
    }, 300_000);
  });
});
