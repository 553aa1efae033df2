import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { Router } from '../../src/router/index.js';
import { catalogUrl, RESHARD_BIN, runCli } from '../support/cli.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 8;
const KEYS = 200;
/** Short periods: one period of 2 s is enough to act, no cool-down in the way. */
const AUTOPILOT_ARGS = ['--period', '2s', '--sustain', '1', '--lease', '5s', '--concurrency', '2'];

/** A running `reshard autopilot --json --metrics-port 0`: its JSON lines, and its /metrics read as samples. */
class AutopilotProcess {
  readonly lines: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  constructor(catalog: string) {
    this.child = spawn(process.execPath, [RESHARD_BIN, '--catalog', catalog, '--json', 'autopilot', ...AUTOPILOT_ARGS, '--metrics-port', '0'], { env: { ...process.env, RESHARD_CATALOG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  async metricsUrl(): Promise<string> {
    return String((await this.until('metrics address', (line) => line.type === 'autopilot_metrics', 30_000)).url);
  }
  /** Polls /metrics until `predicate` holds on its samples; returns them. */
  async metricsUntil(what: string, predicate: (samples: Map<string, number>) => boolean, timeoutMs: number): Promise<Map<string, number>> {
    const url = await this.metricsUrl();
    const deadline = Date.now() + timeoutMs;
    let samples = new Map<string, number>();
    for (;;) {
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      samples = parseSamples(await response.text());
      if (predicate(samples)) return samples;
      if (Date.now() > deadline) throw new Error(`/metrics: no ${what} within ${timeoutMs} ms; samples: ${JSON.stringify([...samples].filter(([name]) => name.startsWith('reshard_autopilot')))}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

/** Prometheus text → sample name with labels (as written) → value. */
function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

describe('reshard autopilot --metrics-port: its state as Prometheus metrics', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: string;
  let router: Router;
  let running = true;
  let traffic: Promise<void> = Promise.resolve();
  const autopilots: AutopilotProcess[] = [];

  beforeAll(async () => {
    cluster = await startTestServers(2, 'apm');
    access = { catalog: cluster.servers[0]!.connection, passwords: noPasswords };
    catalog = catalogUrl(cluster.servers[0]!.connection);
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await createShardedTable(access, { name: 'kv', shardKey: ['id'], definition: 'id bigint PRIMARY KEY, v bigint NOT NULL' });
    router = await Router.connect({ catalog: access.catalog, loadReportMs: 500, poolSizePerNode: 2 });
    for (let key = 1; key <= KEYS; key++) await router.query(key, 'INSERT INTO kv (id, v) VALUES ($1, 0)', [key]);
    // Uniform reads over every key: once n2 holds half the slots, it carries about half the calls.
    traffic = (async () => {
      for (let index = 0; running; index++) await router.query((index % KEYS) + 1, 'SELECT v FROM kv WHERE id = $1', [(index % KEYS) + 1]).catch(() => {});
    })();
    // n2 owns no slot: the autopilot's node-added trigger fires at once.
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
  });
  afterAll(async () => {
    running = false;
    await traffic;
    for (const autopilot of autopilots) autopilot.kill('SIGKILL');
    await Promise.all(autopilots.map((autopilot) => autopilot.exited));
    await router?.close();
    await cluster?.stop();
  });

  it('refuses --metrics-port with --once, in one line', async () => {
    const result = await runCli(['--catalog', catalog, 'autopilot', '--once', '--metrics-port', '0']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--metrics-port serves a long-running autopilot.*Fix: drop --once, or drop --metrics-port/);
  });

  it('shows the lease, the decisions, the triggers, the migrations and each node\'s share of the load', async () => {
    const active = new AutopilotProcess(catalog);
    autopilots.push(active);
    expect(await active.metricsUrl()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const finished = await active.until('the migration to finish', (line) => line.type === 'migration_finished', 180_000);
    expect(finished.state).toBe('completed');

    // Balanced by slots, then measured: n1 and n2 each carry a part of the load, and nothing more to do.
    const samples = await active.metricsUntil('both nodes loaded and a quiet decision', (s) =>
      (s.get('reshard_autopilot_node_load_share{node="n2"}') ?? 0) > 0 && (s.get('reshard_autopilot_node_load_share{node="n1"}') ?? 0) > 0
        && s.get('reshard_autopilot_decision{action="none"}') === 1, 60_000);
    expect(samples.get('reshard_autopilot_lease_held')).toBe(1);
    expect(samples.get('reshard_autopilot_triggers_fired_total{kind="node-added",node="n2"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('reshard_autopilot_migrations_started_total{resumed="false"}')).toBe(1);
    expect(samples.get('reshard_autopilot_migrations_started_total{resumed="true"}')).toBe(0);
    expect(samples.get('reshard_autopilot_migrations_finished_total{state="completed"}')).toBe(1);
    expect(samples.get('reshard_autopilot_evaluations_total{action="start-nodes"}')).toBe(1);
    expect(samples.get('reshard_autopilot_decision{action="start-nodes"}')).toBe(0);
    expect(samples.get('reshard_autopilot_in_window')).toBe(1);
    expect(Math.abs(Date.now() / 1000 - samples.get('reshard_autopilot_last_evaluation_timestamp_seconds')!)).toBeLessThan(30);
    const n1 = samples.get('reshard_autopilot_node_load_share{node="n1"}')!;
    const n2 = samples.get('reshard_autopilot_node_load_share{node="n2"}')!;
    expect(n1 + n2).toBeCloseTo(1, 5);
    expect(samples.get('reshard_autopilot_node_weighted_share{node="n1"}')).toBeCloseTo(0.5, 5);
    expect(samples.get('reshard_autopilot_node_load_ratio{node="n2"}')).toBeCloseTo(n2 / 0.5, 5);
    expect(samples.get('reshard_autopilot_node_load{node="n1"}')).toBeGreaterThan(0);

    // A second autopilot waits for the lease and says so; it has decided nothing.
    const waiting = new AutopilotProcess(catalog);
    autopilots.push(waiting);
    await waiting.until('wait for the lease', (line) => line.type === 'autopilot_waiting', 30_000);
    const waitingSamples = await waiting.metricsUntil('a lease not held', (s) => s.get('reshard_autopilot_lease_held') === 0, 10_000);
    expect(waitingSamples.get('reshard_autopilot_decision{action="none"}')).toBe(0);
    expect(waitingSamples.get('reshard_autopilot_migrations_started_total{resumed="false"}')).toBe(0);
    expect([...waitingSamples.keys()].some((name) => name.startsWith('reshard_autopilot_node_load_share'))).toBe(false);

    // The active one stops cleanly and gives the lease back: the waiting one holds it now.
    active.kill('SIGTERM');
    expect(await active.exited).toBe(0);
    await waiting.metricsUntil('the lease taken over', (s) => s.get('reshard_autopilot_lease_held') === 1, 30_000);
    // Anything but GET /metrics is a 404.
    const other = await fetch((await waiting.metricsUrl()).replace(/\/metrics$/, '/api/state'));
    expect(other.status).toBe(404);
  });
});
