import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createMigration } from '../../src/catalog/migrationRuns.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 24;
const KEYS = 400;
/** Short periods for the test: 3 s, two in a row over the share before acting. */
const AUTOPILOT_ARGS = ['--period', '3s', '--sustain', '2', '--tolerance', '10%', '--floor', '5', '--cooldown', '10m', '--max-moves', '8', '--concurrency', '2', '--lease', '8s', '--max-latency-impact', '1.5'];

interface NodeJson { node: string; load: number; ratio: number | null }

/** A running `reshard autopilot --json`: its JSON lines as they come. */
class AutopilotProcess {
  readonly lines: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  constructor(catalog: string) {
    this.child = spawn(process.execPath, [RESHARD_BIN, '--catalog', catalog, '--json', 'autopilot', ...AUTOPILOT_ARGS], { env: { ...process.env, RESHARD_CATALOG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.lines.push({ text: line });
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(`[autopilot] ${chunk.toString()}`));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }
  async until(what: string, predicate: (line: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`autopilot: no ${what} within ${timeoutMs} ms; last lines: ${JSON.stringify(this.lines.slice(-3)).slice(0, 2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

describe('autopilot: load-aware rebalancing with Zipf-skewed traffic through the router', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: string;
  let router: Router;
  let running = true;
  let traffic: Promise<void> = Promise.resolve();
  const callErrors: string[] = [];
  const autopilots: AutopilotProcess[] = [];

  beforeAll(async () => {
    cluster = await startTestServers(4, 'ap');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    catalog = catalogUrl(cluster.servers[0]!.connection);
    await initCluster(access, SLOTS);
    for (let index = 0; index < 3; index++) await addNode(access, { name: `n${index + 1}`, connection: cluster.servers[index]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
    router = await Router.connect({ catalog: access.catalog, loadReportMs: 500, poolSizePerNode: 4 });
    for (let key = 1; key <= KEYS; key++) await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 0)', [key]);
    traffic = zipfTraffic(router, () => running, callErrors);
  });
  afterAll(async () => {
    running = false;
    await traffic;
    for (const autopilot of autopilots) autopilot.kill('SIGKILL');
    await router?.close();
    await cluster?.stop();
  });

  it('brings the busiest node within 15 % of the mean, survives a SIGKILL mid-migration, then holds with no further moves', async () => {
    // The skew is sustained for two periods: the dry run says what it would do, and why, with the numbers.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    const dryRun = await runCli(['--catalog', catalog, '--json', 'autopilot', '--once', '--dry-run', ...AUTOPILOT_ARGS]);
    expect(dryRun.stderr).toBe('');
    expect(dryRun.code).toBe(0);
    const evaluation = JSON.parse(dryRun.stdout.trim().split('\n').pop()!) as {
      action: string; reason: string; source: string;
      triggers: { kind: string; node: string; fired: boolean; ratios?: number[] }[];
      plan: { moves: { slot: number; from: string; to: string; load: number }[] };
    };
    expect(evaluation.source).toBe('routers');
    expect(evaluation.action).toBe('start-load');
    const n1Trigger = evaluation.triggers.find((trigger) => trigger.kind === 'load' && trigger.node === 'n1')!;
    expect(n1Trigger.fired).toBe(true);
    expect(n1Trigger.ratios!.length).toBe(2);
    for (const ratio of n1Trigger.ratios!) expect(ratio).toBeGreaterThan(1.5);
    expect(evaluation.triggers.filter((trigger) => trigger.fired).map((trigger) => trigger.node)).toEqual(['n1']);
    expect(evaluation.plan.moves.length).toBeGreaterThan(0);
    expect(evaluation.plan.moves.every((move) => move.from === 'n1')).toBe(true);
    const text = await runCli(['--catalog', catalog, 'autopilot', '--once', '--dry-run', ...AUTOPILOT_ARGS]);
    expect(text.stdout).toMatch(/FIRED {2}load n1: over its share in all 2 periods/);
    expect(text.stdout).toMatch(/Decision: start-load: move \d+ slot\(s\) by load: slot \d+ n1→n[23]/);
    expect(await migrationCount()).toBe(0);

    // Outside its windows it only plans, and says what it would do.
    const later = new Date(Date.now() + 2 * 3_600_000);
    const hhmm = (date: Date): string => date.toISOString().slice(11, 16);
    const window = `${hhmm(later)}-${hhmm(new Date(later.getTime() + 3_600_000))}`;
    const outside = JSON.parse((await runCli(['--catalog', catalog, '--json', 'autopilot', '--once', '--dry-run', ...AUTOPILOT_ARGS, '--window', window])).stdout.trim().split('\n').pop()!) as { action: string; reason: string; inWindow: boolean };
    expect(outside.inWindow).toBe(false);
    expect(outside.action).toBe('plan-only');
    expect(outside.reason).toMatch(new RegExp(`^outside the windows \\(${window} UTC\\): would move \\d+ slot\\(s\\) by load`));

    // Never beside a migration started by hand: an interrupted one is left to the operator.
    const manual = await connectTo(cluster.servers[0]!.connection);
    try {
      const manualId = await createMigration(manual, { mode: 'online', baseEpoch: 0, plan: { moves: [] }, moves: [] });
      const waiting = JSON.parse((await runCli(['--catalog', catalog, '--json', 'autopilot', '--once', '--dry-run', ...AUTOPILOT_ARGS])).stdout.trim().split('\n').pop()!) as { action: string; reason: string };
      expect(waiting.action).toBe('wait');
      expect(waiting.reason).toBe(`migration ${manualId} (started by hand) was interrupted (running): the autopilot leaves it to \`reshard resume\` or \`reshard rollback\``);
      await manual.query('DELETE FROM reshard.migration WHERE id = $1', [manualId]);
    } finally {
      await manual.end();
    }

    // The first autopilot takes the lease and starts a migration; a second one waits for the lease (one active per catalog).
    const first = new AutopilotProcess(catalog);
    autopilots.push(first);
    await first.until('a first evaluation', (line) => line.type === 'autopilot_evaluation', 60_000);
    const second = new AutopilotProcess(catalog);
    autopilots.push(second);
    const started = await first.until('migration start', (line) => line.type === 'migration_started', 120_000);
    const migrationId = started.migrationId as number;
    // The first is killed in the middle of its migration.
    first.kill('SIGKILL');
    await first.exited;
    expect(await scalar(`SELECT state FROM reshard.migration WHERE id = ${migrationId}`)).toBe('running');
    await second.until('wait for the lease', (line) => line.type === 'autopilot_waiting', 30_000);
    // It waited before it evaluated anything.
    const firstEvaluation = second.lines.findIndex((line) => line.type === 'autopilot_evaluation');
    expect(firstEvaluation === -1 || second.lines.findIndex((line) => line.type === 'autopilot_waiting') < firstEvaluation).toBe(true);
    // …then takes over and resumes the migration the first left.
    await second.until('resume', (line) => line.type === 'autopilot_evaluation' && line.action === 'resume' && (line.migration as { id: number }).id === migrationId, 60_000);
    await second.until('the resumed migration to finish', (line) => line.type === 'migration_finished' && line.migrationId === migrationId, 240_000);

    // Its copies ran under the latency guard, measured against the routers' p99 before the migration.
    expect(second.lines.some((line) => line.type === 'throttle' && /^latency guard: baseline other slots' p99 \d+\.\d+ ms over \d+ calls \(limit \d+\.\d+ ms\); copies start at \d+ kB\/s$/.test(String(line.reason)))).toBe(true);

    // Balanced: the busiest node within 15 % of the mean, as routers see it.
    const deadline = Date.now() + 300_000;
    let nodes: NodeJson[] = [];
    for (;;) {
      nodes = await loadNodes('6s');
      if (maxOverMean(nodes) <= 1.15 && !(await migrationRunning())) break;
      if (Date.now() > deadline) throw new Error(`not balanced within the bound: ${JSON.stringify(nodes)}`);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
    // Steady: several periods, no further move.
    const movesBefore = await moveCount();
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    expect(await moveCount()).toBe(movesBefore);
    expect(await migrationRunning()).toBe(false);
    const steady = await loadNodes('15s');
    expect(maxOverMean(steady)).toBeLessThanOrEqual(1.15);
    console.log(`autopilot: ${await migrationCount()} migration(s), ${movesBefore} move(s); node load/share before ${n1Trigger.ratios!.map((ratio) => ratio.toFixed(2)).join(', ')} (n1), steady ${steady.map((node) => `${node.node} ${node.ratio?.toFixed(2)}`).join(', ')}; busiest/mean ${maxOverMean(steady).toFixed(3)}; latency guard: ${second.lines.filter((line) => line.type === 'throttle').map((line) => String(line.reason)).join(' | ')}`);

    // Every decision journaled: the start (by the first), the resume (by the second), each finish.
    const client = await connectTo(cluster.servers[0]!.connection);
    try {
      const decisions = await client.query<{ kind: string; acted: boolean; migration_id: string | null; holder: string; summary: string }>('SELECT kind, acted, migration_id::text, holder, summary FROM reshard.autopilot_decision ORDER BY id');
      const starts = decisions.rows.filter((row) => row.kind === 'start' && row.acted);
      expect(starts[0]!.migration_id).toBe(String(migrationId));
      expect(decisions.rows.some((row) => row.kind === 'resume' && row.migration_id === String(migrationId))).toBe(true);
      expect(decisions.rows.filter((row) => row.kind === 'finish' && row.acted).every((row) => /completed/.test(row.summary))).toBe(true);
      const migrations = await client.query<{ state: string; origin: string }>("SELECT state, plan->>'origin' AS origin FROM reshard.migration ORDER BY id");
      expect(migrations.rows.every((row) => row.state === 'completed' && row.origin === 'autopilot')).toBe(true);
    } finally {
      await client.end();
    }

    // A clean stop gives the lease back.
    second.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    const lease = await connectTo(cluster.servers[0]!.connection);
    try {
      expect((await lease.query('SELECT 1 FROM reshard.autopilot_lease')).rowCount).toBe(0);
    } finally {
      await lease.end();
    }
    expect(callErrors).toEqual([]);

    // A node added later is a trigger that acts at once (in its next window): it owns no slot yet.
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    const addedRun = await runCli(['--catalog', catalog, '--json', 'autopilot', '--once', '--dry-run', ...AUTOPILOT_ARGS]);
    expect(addedRun.stderr).toBe('');
    const added = JSON.parse(addedRun.stdout.trim().split('\n').pop()!) as { action: string; reason: string; triggers: { kind: string; node: string; fired: boolean }[] };
    expect(added.action).toBe('start-nodes');
    expect(added.triggers.filter((trigger) => trigger.kind === 'node-added' && trigger.fired).map((trigger) => trigger.node)).toEqual(['n4']);
    expect(added.reason).toBe('rebalance slots at once: n4 has weight but owns no slot: fill it at once');
  });

  async function loadNodes(window: string): Promise<NodeJson[]> {
    const result = await runCli(['--catalog', catalog, '--json', 'load-report', '--window', window]);
    expect(result.code).toBe(0);
    return (JSON.parse(result.stdout.trim().split('\n').pop()!) as { nodes: NodeJson[] }).nodes;
  }
  async function scalar(sql: string): Promise<string> {
    const client = await connectTo(cluster.servers[0]!.connection);
    try {
      return String(Object.values((await client.query(sql)).rows[0]!)[0]);
    } finally {
      await client.end();
    }
  }
  async function migrationCount(): Promise<number> {
    return Number(await scalar('SELECT count(*) FROM reshard.migration'));
  }
  async function moveCount(): Promise<number> {
    return Number(await scalar('SELECT count(*) FROM reshard.move'));
  }
  async function migrationRunning(): Promise<boolean> {
    return (await scalar("SELECT count(*) FROM reshard.migration WHERE state = 'running'")) !== '0';
  }
});

function maxOverMean(nodes: readonly NodeJson[]): number {
  const mean = nodes.reduce((sum, node) => sum + node.load, 0) / nodes.length;
  return Math.max(...nodes.map((node) => node.load)) / mean;
}

/**
 * Zipf-distributed calls (rank r gets ∝ 1/r), in a fixed shuffled order so
 * that every period sees the same proportions. The six hottest keys live on
 * six different slots of n1: its load starts about twice its share.
 */
function zipfTraffic(router: Router, keepGoing: () => boolean, errors: string[]): Promise<void> {
  const n1Keys: number[] = [];
  const n1Slots = new Set<number>();
  for (let key = 1; key <= KEYS && n1Keys.length < 6; key++) {
    const slot = router.slotOf(key);
    if (router.routeOf(slot).owner === 'n1' && !n1Slots.has(slot)) {
      n1Slots.add(slot);
      n1Keys.push(key);
    }
  }
  const others = Array.from({ length: KEYS }, (_, i) => i + 1).filter((key) => !n1Keys.includes(key));
  const byRank = [...n1Keys, ...others.slice(0, 54)];
  const cycle: number[] = [];
  byRank.forEach((key, index) => {
    for (let n = 0; n < Math.round(120 / (index + 1)); n++) cycle.push(key);
  });
  let seed = 42;
  for (let i = cycle.length - 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = seed % (i + 1);
    [cycle[i], cycle[j]] = [cycle[j]!, cycle[i]!];
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (keepGoing()) {
      const index = next++;
      const key = cycle[index % cycle.length]!;
      try {
        if (index % 5 === 0) await router.query(key, 'UPDATE kv SET v = v + 1 WHERE id = $1', [key]);
        else await router.query(key, 'SELECT v FROM kv WHERE id = $1', [key]);
      } catch (error) {
        errors.push((error as Error).message);
        if (errors.length > 20) return;
      }
    }
  };
  return Promise.all(Array.from({ length: 4 }, worker)).then(() => undefined);
}
