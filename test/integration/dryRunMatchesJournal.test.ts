import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { removeNode } from '../../src/admin/removeNode.js';
import { readJournal, type JournalEntry } from '../../src/catalog/journal.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { loadDemoRows } from '../../src/demo/demoData.js';
import { catalogUrl, runCli } from '../support/cli.js';
import { createDemoCluster } from '../support/cluster.js';
import { startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;

interface DryRunMove { slot: number; from: string; to: string; steps: { name: string; action: string }[] }

/** `reshard --json rebalance …`: its last JSON line, the command's result. */
async function rebalanceJson(catalog: string, args: readonly string[]): Promise<Record<string, unknown>> {
  const result = await runCli(['--json', '--catalog', catalog, 'rebalance', ...args]);
  expect(result.code, `reshard rebalance ${args.join(' ')} exited ${result.code}; stderr: ${result.stderr}`).toBe(0);
  const lines = result.stdout.split('\n').filter((line) => line.trim().length > 0);
  return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
}

/**
 * Per slot, the steps the journal shows the move took, in order: each step at
 * its first 'begin' (a cutover retried after an abandoned freeze begins its
 * steps again, which names no new step) and, separately, at its last 'done'.
 */
function journaledSteps(entries: readonly JournalEntry[], slot: number): { begun: string[]; done: string[] } {
  const ofSlot = entries.filter((entry) => entry.slot === slot);
  const begun = [...new Set(ofSlot.filter((entry) => entry.action === 'begin').map((entry) => entry.step))];
  const lastDone = new Map<string, number>();
  for (const entry of ofSlot) if (entry.action === 'done') lastDone.set(entry.step, entry.id);
  const done = [...lastDone.entries()].sort((a, b) => a[1] - b[1]).map(([step]) => step);
  return { begun, done };
}

/** The dry run's plan, then the real run of the same plan: the same moves, each naming the same steps in the same order. */
async function expectDryRunIsTheJournal(access: ClusterAccess, catalog: string, mode: 'online' | 'offline'): Promise<void> {
  const dryRun = await rebalanceJson(catalog, ['--dry-run', '--mode', mode]);
  expect(dryRun['dry_run']).toBe(true);
  const planned = dryRun['steps'] as DryRunMove[];
  expect(planned.length).toBeGreaterThan(0);
  for (const move of planned) for (const step of move.steps) expect(step.action.length).toBeGreaterThan(0);

  const run = await rebalanceJson(catalog, ['--mode', mode]);
  expect(run['state'], JSON.stringify(run)).toBe('completed');
  const migrationId = run['migration_id'] as number;
  const entries = await withCatalog(access, (db) => readJournal(db, migrationId));
  const movedSlots = [...new Set(entries.filter((entry) => entry.slot !== undefined).map((entry) => entry.slot!))].sort((a, b) => a - b);
  expect(movedSlots).toEqual(planned.map((move) => move.slot).sort((a, b) => a - b));
  for (const move of planned) {
    const names = move.steps.map((step) => step.name);
    const journaled = journaledSteps(entries, move.slot);
    expect(journaled.begun, `slot ${move.slot}: steps begun`).toEqual(names);
    expect(journaled.done, `slot ${move.slot}: steps done`).toEqual(names);
  }
}

describe('--dry-run prints the steps that run: the journal of the real run names the same ones, in order', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let catalog: string;
  beforeAll(async () => {
    cluster = await startTestServers(4, 'on');
    access = await createDemoCluster(cluster.servers, 3, SLOTS);
    catalog = catalogUrl(cluster.servers[0]!.connection);
    await loadDemoRows(access, 1_000);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('offline: a grow onto a new node', async () => {
    await addNode(access, { name: 'n4', connection: cluster.servers[3]!.connection });
    await expectDryRunIsTheJournal(access, catalog, 'offline');
  });

  it('online: the shrink back', async () => {
    await removeNode(access, 'n4');
    await expectDryRunIsTheJournal(access, catalog, 'online');
  });
});
