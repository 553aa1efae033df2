import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { prepareRebalance } from '../../src/admin/rebalance.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { readControl, requestResume } from '../../src/catalog/migrationControl.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { runMigration, type MigrationSummary } from '../../src/coordinator/runMigration.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { launchBrowser } from '../support/browser.js';
import { RESHARD_BIN, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 64;
/** Enough rows that the copy takes a few seconds: the page must see it run, pause and go on. */
const USERS = 40_000;
const TOKEN = 'dashboard-test-token-0123456789';
/** Secrets the page, API and metrics must never show: node passwords and the catalog's. */
const SECRETS = ['n1-Pa55word-secret', 'n2-Pa55word-secret', 'n3-Pa55word-secret', 'n4-Pa55word-secret', 'catalog-Pa55word-secret'];
const SCREENSHOT = process.env['RESHARD_DASHBOARD_SCREENSHOT'] ?? join(tmpdir(), 'reshard-dashboard.png');

/** Starts `reshard dashboard` as a user would and waits for its address. */
function startDashboardCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [RESHARD_BIN, ...args], {
    env: { ...process.env, RESHARD_CATALOG: '', PGHOST: '', PGPORT: '', PGDATABASE: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the dashboard did not start within 30 s: ${output}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /Dashboard: (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1]!, output: () => output });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the dashboard exited with ${code}: ${output}`));
    });
  });
}

async function attribute(page: Page, selector: string, name: string): Promise<number> {
  return Number(await page.locator(selector).getAttribute(name));
}

async function ownedBy(page: Page, node: string): Promise<number> {
  return page.locator(`#grid .slot[data-owner="${node}"]`).count();
}

describe('dashboard in a real browser during a real migration', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: pg.Client;
  let dashboard: { child: ChildProcess; url: string; output: () => string };
  let browser: Browser;

  beforeAll(async () => {
    // Tuned servers: this test is about the page, not the settings; on stock limits the batches take turns, and with
    // two other test files busy beside it the pause-resume-complete sequence could outlast the test's bound.
    cluster = await startTestServers(4, 'dash', undefined, 'tuned');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    await loadDemoRows(access, USERS);
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    catalog = await connectTo(cluster.servers[0]!.connection);
    // The servers trust loopback, so any password works: these only have to stay off the page.
    const config = join(cluster.baseDir, 'reshard.json');
    const { host, port, database, user } = cluster.servers[0]!.connection;
    writeFileSync(config, JSON.stringify({
      catalog: { host, port, database, user, password: SECRETS[4] },
      passwords: Object.fromEntries(SECRETS.slice(0, 4).map((secret, index) => [`n${index + 1}`, secret])),
    }));
    dashboard = await startDashboardCli(['--config', config, 'dashboard', '--port', '0'], { RESHARD_DASHBOARD_TOKEN: TOKEN });
    const launched = await launchBrowser();
    browser = launched.browser;
    console.log(`dashboard test: browser ${launched.choice.source} at ${launched.choice.executablePath}`);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    if (dashboard && dashboard.child.exitCode === null) dashboard.child.kill('SIGKILL');
    await catalog?.end();
    await cluster?.stop();
  });

  it('shows the slot grid, nodes, plan and live progress; pause needs the token; no secret reaches the page', async () => {
    expect(dashboard.output()).not.toContain(TOKEN);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
    await page.goto(dashboard.url);
    await page.locator('#live.on').waitFor({ timeout: 15_000 });

    // Before the migration: every slot, every node, the plan with its comparison.
    await expect.poll(() => page.locator('#grid .slot').count()).toBe(SLOTS);
    for (const node of ['n1', 'n2', 'n3', 'n4']) await expect.poll(() => page.locator(`#nodes tr[data-node="${node}"]`).count()).toBe(1);
    expect(await ownedBy(page, 'n4')).toBe(0);
    await page.locator('#plan table.matrix').waitFor({ timeout: 15_000 });
    expect(await page.locator('#plan').innerText()).toMatch(/16 of 64 slots move/);
    expect(await page.locator('#plan').innerText()).toMatch(/hash mod N/);

    const prepared = await prepareRebalance(access, { mode: 'online', dryRun: false });
    const migrationId = prepared.migrationId!;
    let summary: MigrationSummary | undefined;
    // Capped copies: the pause must land while slots still move, however fast the cutovers and cleanups have become.
    const running = runMigration(migrationId, { access, emit: () => {}, moveConcurrencyMax: 1, throttle: { copyBytesPerSecMax: 1_000_000 } }).then((result) => { summary = result; return result; });
    try {
      const state = page.locator('[data-testid="migration-state"]');
      await expect.poll(() => state.textContent(), { timeout: 30_000, interval: 100 }).toBe('running');

      // Once a batch streams (its lag measured on its source), pause from the page, with the token: the copies'
      // cap leaves the other batches' streams to go, so the pause lands before every slot has switched.
      await expect.poll(async () => (await page.locator('#moves td.lag').allTextContents()).filter((text) => /B$/.test(text)).length, { timeout: 30_000 }).toBeGreaterThan(0);
      // Pause from the page, with the token.
      await page.fill('#token', TOKEN);
      await page.click('button[data-action="pause"]');
      await expect.poll(() => page.locator('#action-result').textContent()).toMatch(/control is now “pause”/);
      await expect.poll(() => state.textContent(), { timeout: 60_000 }).toBe('paused');
      expect(summary).toBeUndefined();
      const slotsDonePaused = await attribute(page, '#progress-slots', 'data-slots-done');
      const bytesTotal = await attribute(page, '#progress-bytes', 'data-bytes-total');
      expect(bytesTotal).toBeGreaterThan(0);
      expect(slotsDonePaused).toBeLessThan(16);
      expect(await page.locator('#grid .slot.moving, #grid .slot.waiting').count()).toBeGreaterThan(0);
      expect(await page.locator('#moves tr[data-slot]').count()).toBe(16);
      // The paused batches keep streaming: their replication lag is measured on the sources.
      await expect.poll(async () => (await page.locator('#moves td.lag').allTextContents()).filter((text) => /B$/.test(text)).length, { timeout: 15_000 }).toBeGreaterThan(0);
      await page.screenshot({ path: SCREENSHOT, fullPage: true });

      // Without the token, or with a wrong one, resume is refused and nothing changes.
      await page.fill('#token', '');
      await page.click('button[data-action="resume"]');
      await expect.poll(() => page.locator('#action-result').textContent()).toMatch(/resume refused \(401\): resume needs the dashboard's control token/);
      await page.fill('#token', 'not-the-token-at-all');
      await page.click('button[data-action="resume"]');
      await expect.poll(() => page.locator('#action-result').textContent()).toMatch(/resume refused \(403\): the control token is wrong/);
      const refused = await page.evaluate(async () => {
        const response = await fetch('api/migration/cancel', { method: 'POST' });
        return { status: response.status, body: await response.json() as { error: { code: string } } };
      });
      expect(refused).toEqual({ status: 401, body: { error: expect.objectContaining({ code: 'unauthorized' }) } });
      expect(await readControl(catalog, migrationId)).toBe('pause');
      expect(await page.locator('#events').innerText()).toMatch(/paused: holding before its next step/);

      // Resume with the token: the progress and the slot map advance to the end.
      await page.fill('#token', TOKEN);
      await page.click('button[data-action="resume"]');
      await expect.poll(() => page.locator('#action-result').textContent()).toMatch(/control is now “run”/);
      const seen = new Set<number>();
      await expect.poll(async () => {
        // The state first: the poll that sees 'completed' then sees the progress that came with it (the rest of
        // the migration can finish between two polls).
        const now = await state.textContent();
        seen.add(await attribute(page, '#progress-slots', 'data-slots-done'));
        return now;
      }, { timeout: 120_000, interval: 200 }).toBe('completed');
      expect((await running).state).toBe('completed');
      expect(await attribute(page, '#progress-slots', 'data-slots-done')).toBe(16);
      expect(await attribute(page, '#progress-bytes', 'data-bytes-copied')).toBe(bytesTotal);
      expect(Math.max(...seen)).toBeGreaterThan(slotsDonePaused);
      await expect.poll(() => ownedBy(page, 'n4')).toBe(16);
      await expect.poll(() => page.locator('#history tr').count()).toBeGreaterThan(1);
      expect(await page.locator('#events').innerText()).toMatch(/resumed after/);

      // No secret anywhere: the page as rendered, the API and the metrics.
      const api = await page.evaluate(async () => (await (await fetch('api/state')).text()) + (await (await fetch('metrics')).text()));
      const everything = (await page.content()) + api;
      for (const secret of SECRETS) expect(everything).not.toContain(secret);
      expect(everything).not.toMatch(/postgres(ql)?:\/\//);
      for (const server of cluster.servers) expect(everything).not.toContain(`127.0.0.1:${server.port}`);
      expect(api).toMatch(/reshard_node_slots\{node="n4"\} 16/);
      expect(api).toMatch(/reshard_migration_state\{state="completed"\} 1/);
      expect(api).toMatch(/reshard_slot_write_pause_seconds_count 16/);
      expect((await verifyCluster(access)).problems).toEqual([]);
    } finally {
      // A failed assertion while the migration is paused must not leave it paused: the run would hold for its
      // 24-hour pause limit and hide the failure behind the test's timeout.
      if (summary === undefined) await requestResume(catalog, migrationId).catch(() => {});
      await running.catch(() => {});
      await page.close();
    }
  }, 420_000);

  it('rolls the migration back from the API with the token, and answers bad --port or a busy port with one clear line', async () => {
    const endpoint = new URL('api/migration/rollback', dashboard.url);
    expect((await fetch(endpoint, { method: 'POST' })).status).toBe(401);
    const rollback = await fetch(endpoint, { method: 'POST', headers: { 'X-Reshard-Token': TOKEN } });
    expect([200, 202]).toContain(rollback.status);
    const state = async (): Promise<{ history: { id: number; state: string }[] }> => (await fetch(new URL('api/state', dashboard.url))).json() as Promise<{ history: { id: number; state: string }[] }>;
    // Switched slots move back as a new migration; the first one ends rolled back.
    await expect.poll(async () => (await state()).history.map((entry) => entry.state), { timeout: 120_000, interval: 500 }).toEqual(['completed', 'rolled_back']);
    expect((await verifyCluster(access)).problems).toEqual([]);
    expect((await fetch(new URL('metrics', dashboard.url)).then((response) => response.text()))).toMatch(/reshard_node_slots\{node="n4"\} 0/);

    const catalogArgs = ['--catalog', `postgres://postgres@127.0.0.1:${cluster.servers[0]!.port}/postgres`];
    const busyPort = new URL(dashboard.url).port;
    const busy = await runCli([...catalogArgs, 'dashboard', '--port', busyPort]);
    expect(busy.code).toBe(5);
    expect(busy.stderr.trim()).toMatch(new RegExp(`^reshard: error: port ${busyPort} on 127\\.0\\.0\\.1 is already in use\\. Fix: pass another --port`));
    const badPort = await runCli([...catalogArgs, 'dashboard', '--port', '70000']);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr.trim().split('\n')).toHaveLength(1);
    expect(badPort.stderr).toMatch(/^reshard: error: --port must be a port number from 0 to 65535, got "70000"\. Fix: /);
    const shortToken = await runCli([...catalogArgs, 'dashboard', '--port', '0'], { RESHARD_DASHBOARD_TOKEN: 'short' });
    expect(shortToken.code).toBe(2);
    expect(shortToken.stderr).toMatch(/^reshard: error: RESHARD_DASHBOARD_TOKEN is shorter than 16 characters\. Fix: /);
  });

  it('stops cleanly on Ctrl-C', async () => {
    const exited = new Promise<number | null>((resolve) => dashboard.child.once('exit', (code) => resolve(code)));
    dashboard.child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(dashboard.output()).toContain('Dashboard stopped.');
  });
});
