import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { splitSlot } from '../../src/admin/slotExchange.js';
import { listMoves, listMigrations, type MigrationRecord } from '../../src/catalog/migrationRuns.js';
import { readJournal } from '../../src/catalog/journal.js';
import type { MoveStepName } from '../../src/core/moveStepNames.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { hasSlot, slotModulus, type SlotMap } from '../../src/core/slotMap.js';
import { CHECK_TABLES } from '../../src/checker/checkTables.js';
import { verifyWorkload } from '../../src/checker/verifyWorkload.js';
import { Workload } from '../../src/checker/workload.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { sleep } from '../../src/plumbing/waitFor.js';
import type { LocalServer } from '../../src/local/localServer.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { reshardReplicationObjects } from '../../src/node/replication.js';
import { Router } from '../../src/router/router.js';
import { catalogUrl, RESHARD_BIN } from '../support/cli.js';
import { connectTo } from '../support/servers.js';
import { TcpProxy } from '../support/tcpProxy.js';

/**
 * `split`: `reshard split --slot N` of a slot on n2 (the split's node is its source and its target);
 * `split-all`: `reshard split --all`, the fault at a step of a slot of n2; `merge`: `reshard merge --slot N`
 * of a slot of n2 split before; `split-to`: `reshard split --slot N --to n3`, one migration whose steps
 * (a split's names) run on n2 (the source: the slot's leaf and the low child) and n3 (the target: the
 * high child N + 8).
 */
export type Mover = 'online' | 'offline' | 'split' | 'split-all' | 'merge' | 'split-to';
/** The movers that split or merge slots: their cells take SPLIT_VICTIMS (split --to: SPLIT_TO_VICTIMS). */
export const EXCHANGE_MOVERS: readonly Mover[] = ['split', 'split-all', 'merge', 'split-to'];
/** `rollback`: the coordinator is killed as in `coordinator`, then `reshard rollback` takes the migration back instead of `resume`. */
export type Victim = 'coordinator' | 'source' | 'target' | 'net-cut' | 'net-stall' | 'rollback';

export const STEPS: Record<Mover, readonly MoveStepName[]> = {
  online: ['prepare', 'stream', 'attach', 'freeze', 'sync', 'switch', 'cleanup'],
  offline: ['prepare', 'freeze', 'copy', 'verify', 'attach', 'switch', 'cleanup'],
  split: ['prepare', 'copy', 'freeze', 'sync', 'attach', 'switch', 'cleanup'],
  'split-all': ['prepare', 'copy', 'freeze', 'sync', 'attach', 'switch', 'cleanup'],
  merge: ['prepare', 'copy', 'freeze', 'sync', 'attach', 'switch', 'cleanup'],
  'split-to': ['prepare', 'copy', 'freeze', 'sync', 'attach', 'switch', 'cleanup'],
};
export const VICTIMS: readonly Victim[] = ['coordinator', 'source', 'target', 'net-cut', 'net-stall', 'rollback'];
/** A split has one node: stopping it is `source` (a `target` cell would be the same cell). */
export const SPLIT_VICTIMS: readonly Victim[] = ['coordinator', 'source', 'net-cut', 'rollback'];
/** A split --to has two: the slot's (`source`) and the high child's (`target`). */
export const SPLIT_TO_VICTIMS: readonly Victim[] = ['coordinator', 'source', 'target', 'net-cut', 'rollback'];

/** The victims of a mover's cells. */
export function victimsOf(mover: Mover): readonly Victim[] {
  if (mover === 'split-to') return SPLIT_TO_VICTIMS;
  return EXCHANGE_MOVERS.includes(mover) ? SPLIT_VICTIMS : VICTIMS;
}

export interface FaultCell {
  mover: Mover;
  step: MoveStepName;
  victim: Victim;
}

export interface CellResult {
  cell: FaultCell;
  ok: boolean;
  /** Why the cell failed, one line each. */
  problems: string[];
  /** What happened, for the report: where the fault landed, how the first run ended, the resume. */
  notes: string[];
  seconds: number;
}

/** Small and fast: 8 slots on n1..n3, n4 added; the grow moves 2 slots. */
const SLOTS = 8;
/** The coordinator gives up on a silent connection after this long (a stalled network). */
const QUERY_TIMEOUT_MS = 4_000;
/** Every wait of the harness has a bound too: a coordinator that outlives this after a fault hangs. */
const CHILD_EXIT_TIMEOUT_MS = 60_000;
/** How long a crashed server stays down, or a cut link cut. */
const FAULT_MS = 2_000;
const RESUME_TIMEOUT_MS = 120_000;

interface ChildRun {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
  lastResult: () => Record<string, unknown> | undefined;
  events: string[];
}

function startCli(args: readonly string[], onEvent: (event: Record<string, unknown>) => Promise<void> | void): ChildRun {
  const child = spawn(process.execPath, [RESHARD_BIN, ...args], {
    env: { ...process.env, RESHARD_CATALOG: '', PGHOST: '', PGPORT: '', PGDATABASE: '', RESHARD_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  let last: Record<string, unknown> | undefined;
  const events: string[] = [];
  // Events are handled one at a time, in order: a handler may pause the child and inspect the catalog.
  let chain = Promise.resolve();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    last = event;
    events.push(line);
    chain = chain.then(() => onEvent(event)).catch(() => {});
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => { void chain.then(() => resolve({ code, signal })); });
  });
  return { child, exited, stderr: () => stderr, lastResult: () => last, events };
}

async function boundedExit(run: ChildRun, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), timeoutMs); });
  try {
    return await Promise.race([run.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function lastLines(text: string, count = 2): string {
  return text.split('\n').map((line) => line.trim()).filter(Boolean).slice(-count).join(' | ');
}

/**
 * One cell of the fault matrix: a fresh 3-node cluster under a light routed
 * workload grows to 4 nodes; when `step` begins for a slot of the chosen
 * move, the victim is hit; then the victim recovers, `reshard resume`
 * finishes the migration, and the cell checks the invariants, every
 * acknowledged write, and that nothing of reshard is left on any node.
 */
export async function runFaultCell(cell: FaultCell, servers: readonly LocalServer[], database: string): Promise<CellResult> {
  const started = Date.now();
  const problems: string[] = [];
  const notes: string[] = [];
  const proxies = new Map<string, TcpProxy>();
  let router: Router | undefined;
  let workload: Workload | undefined;
  let run: ChildRun | undefined;
  const phases: string[] = [];
  let phaseStart = Date.now();
  const phase = (name: string): void => {
    phases.push(`${name} ${((Date.now() - phaseStart) / 1000).toFixed(1)}`);
    phaseStart = Date.now();
  };
  try {
    // The servers are shared by all cells (starting four costs more than a cell); each cell has its own database on each.
    for (const server of servers) await server.start();
    await Promise.all(servers.map((server) => createDatabase(server, database)));
    const serverOf = new Map<string, LocalServer>(servers.map((server, index) => [`n${index + 1}`, { ...server, connection: { ...server.connection, database } }]));
    phase('databases');
    // The catalog lives on n1, reached directly; n2..n4 are reached (by everyone, subscriptions too) through proxies.
    for (const name of ['n2', 'n3', 'n4']) proxies.set(name, await TcpProxy.start(serverOf.get(name)!.port));
    const connectionOf = (name: string): LocalServer['connection'] => {
      const proxy = proxies.get(name);
      return { ...serverOf.get(name)!.connection, ...(proxy ? { port: proxy.port } : {}) };
    };
    const access: ClusterAccess = { catalog: serverOf.get('n1')!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    for (const name of ['n1', 'n2', 'n3']) await addNode(access, { name, connection: connectionOf(name) });
    for (const table of CHECK_TABLES) {
      await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
    }

    let chosen: { source: string; target: string; slots: Set<number> } | undefined;
    router = await Router.connect({ catalog: access.catalog, name: 'fault matrix', poolSizePerNode: 3 });
    workload = new Workload(router, { clients: 2, counters: 16, thinkMs: 5, hotSlots: () => [...(chosen?.slots ?? [])], hotProbability: 0.5 }, SLOTS);
    await workload.prepare();
    workload.start();
    await sleep(300);
    const splitting = EXCHANGE_MOVERS.includes(cell.mover);
    if (splitting) {
      // A slot of n2 (reached through its proxy), so stopping its node leaves the catalog up; its writers are hot.
      const owners = (await withCatalog(access, (db) => readSlotMap(db))).owners;
      const slot = owners.indexOf('n2');
      if (cell.mover === 'merge' && slot >= 0) await splitSlot(access, { slot });
      chosen = { source: 'n2', target: cell.mover === 'split-to' ? 'n3' : 'n2', slots: new Set([slot]) };
    } else {
      await addNode(access, { name: 'n4', connection: connectionOf('n4') });
    }
    phase('cluster');

    let injected: Promise<void> | undefined;
    let recovered: Promise<void> | undefined;
    const recover = async (): Promise<void> => {
      for (const server of servers) await server.start();
      for (const proxy of proxies.values()) proxy.heal();
    };
    const hit = async (child: ChildProcess): Promise<void> => {
      const { source, target } = chosen!;
      if (cell.victim === 'coordinator' || cell.victim === 'rollback') {
        child.kill('SIGKILL');
        return;
      }
      // Paused, the coordinator cannot finish the step before the fault lands.
      child.kill('SIGSTOP');
      try {
        if (cell.victim === 'source') await serverOf.get(source)!.stop('immediate');
        if (cell.victim === 'target') await serverOf.get(target)!.stop('immediate');
        if (cell.victim === 'net-cut') for (const name of [source, target]) proxies.get(name)?.cut();
        if (cell.victim === 'net-stall') for (const name of [source, target]) proxies.get(name)?.stall();
      } finally {
        child.kill('SIGCONT');
      }
      // A crashed server is restarted and a cut link comes back while the coordinator runs on, as a
      // supervisor and a network would; a stall lasts until the coordinator gives up (its timeouts bound it).
      if (cell.victim !== 'net-stall') recovered = sleep(FAULT_MS).then(recover);
    };
    const catalog = catalogUrl(access.catalog);
    /** `reshard resume` or `rollback` after the fault: its last JSON line, or undefined (and a problem) if it failed or hung. */
    const splitSlotId = splitting ? [...chosen!.slots][0]! : undefined;
    // A split (--to too: its plan keeps its target) or a merge is resumed by running it again (it continues from
    // its journal); a split-all by `reshard resume`.
    const commandArgs = (command: 'resume' | 'rollback'): string[] => {
      if (command === 'resume' && (cell.mover === 'split' || cell.mover === 'split-to')) return ['split', '--slot', String(splitSlotId)];
      if (command === 'resume' && cell.mover === 'merge') return ['merge', '--slot', String(splitSlotId)];
      return [command];
    };
    const runToEnd = async (command: 'resume' | 'rollback'): Promise<Record<string, unknown> | undefined> => {
      const followUp = startCli(['--json', '--catalog', catalog, ...commandArgs(command)], () => {});
      const ended = await boundedExit(followUp, RESUME_TIMEOUT_MS);
      if (!ended) {
        followUp.child.kill('SIGKILL');
        problems.push(`reshard ${command} did not finish within ${RESUME_TIMEOUT_MS / 1000} s`);
      } else if (ended.code !== 0) {
        problems.push(`reshard ${command} failed (exit ${ended.code}): ${lastLines(followUp.stderr())}`);
      } else {
        return followUp.lastResult() ?? {};
      }
      return undefined;
    };
    const firstRuns: Partial<Record<Mover, string[]>> = {
      split: ['split', '--slot', String(splitSlotId)],
      'split-all': ['split', '--all'],
      merge: ['merge', '--slot', String(splitSlotId)],
      'split-to': ['split', '--slot', String(splitSlotId), '--to', 'n3'],
    };
    const firstRun = firstRuns[cell.mover] ?? ['rebalance', '--mode', cell.mover, '--concurrency', '4'];
    run = startCli(['--json', '--catalog', catalog, ...firstRun], async (event) => {
      const child = run!.child;
      if (event['event'] === 'migration_started' && !chosen) {
        child.kill('SIGSTOP');
        try {
          const moves = await withCatalog(access, (db) => listMoves(db, Number(event['migrationId'])));
          // A source other than n1, so stopping it leaves the catalog up.
          const first = moves.find((move) => proxies.has(move.source));
          if (first) chosen = { source: first.source, target: first.target, slots: new Set(moves.filter((move) => move.source === first.source && move.target === first.target).map((move) => move.slot)) };
        } finally {
          child.kill('SIGCONT');
        }
        return;
      }
      if (chosen && !injected && event['event'] === 'step' && event['action'] === 'begin' && event['step'] === cell.step && chosen.slots.has(Number(event['slot']))) {
        injected = hit(child);
        await injected;
      }
    });
    const exit = await boundedExit(run, CHILD_EXIT_TIMEOUT_MS);
    if (!exit) {
      problems.push(`the coordinator did not exit within ${CHILD_EXIT_TIMEOUT_MS / 1000} s after the fault (a wait without a bound); last events: ${run.events.slice(-4).join(' ')}`);
      run.child.kill('SIGKILL');
      await run.exited;
    }
    if (!chosen || (splitting && splitSlotId! < 0)) problems.push('no move from n2/n3 (or slot of n2) to pick');
    if (!injected) problems.push(`step ${cell.step} never began for the chosen move`);
    await injected?.catch((error: unknown) => problems.push(`fault injection failed: ${String(error)}`));
    phase('run');
    notes.push(`run: ${exit ? (exit.signal ?? `exit ${exit.code}`) : 'hung'}${exit?.code ? ` (${lastLines(run.stderr(), 1)})` : ''}`);

    // Recovery: the victim comes back (if it has not already).
    await recovered;
    await recover();
    if (chosen) {
      const journal = await withCatalog(access, async (db) => {
        const migration = (await listMigrations(db, 1))[0]!;
        return { state: migration.state, entries: await readJournal(db, migration.id) };
      });
      const slotEntries = journal.entries.filter((entry) => entry.slot !== undefined && chosen!.slots.has(entry.slot));
      const lastEntry = slotEntries[slotEntries.length - 1];
      notes.push(`after the fault: migration ${journal.state}, journal of slot ${lastEntry?.slot ?? '-'} ends with ${lastEntry ? `${lastEntry.step} ${lastEntry.action}` : 'nothing'}`);
      if (cell.victim === 'rollback') {
        const result = await runToEnd('rollback');
        if (result) notes.push(`rollback: undone ${JSON.stringify(result['undone_slots'] ?? result['undoneSlots'] ?? '?')}, moved back ${JSON.stringify(result['moved_back_slots'] ?? result['movedBackSlots'] ?? '?')}`);
      } else if (journal.state !== 'completed') {
        const result = await runToEnd('resume');
        if (result) notes.push(`resume: ${String(result['state'] ?? (result['resumed'] === true ? 'split resumed' : result['kind']))}`);
      }
    }

    phase('recover+resume');
    await sleep(300);
    const log = await workload.stop();
    workload = undefined;
    const report = await verifyWorkload(access, log);
    problems.push(...report.violations);
    notes.push(`writes: ${report.insertsAcked} inserts, ${report.incrementsAcked} increments, ${report.deletesAcked} deletes acknowledged; ${report.unknownOutcomes} unknown`);
    const final = await withCatalog(access, async (db) => {
      const migrations = await listMigrations(db, 2);
      return { migrations, moves: await listMoves(db, migrations[0]!.id), map: await readSlotMap(db) };
    });
    const [latest, previous] = final.migrations;
    if (splitting) {
      problems.push(...exchangeOutcomeProblems(cell, splitSlotId!, final.map, latest!, previous));
      // Leaves attached on their owner only, with their modulus; no staged, retired or fenced leaf left.
      const verified = await verifyCluster(access);
      problems.push(...verified.problems.map((problem) => `verify: ${problem}`));
    } else if (cell.victim === 'rollback') {
      // Taken back: the grow is rolled back, and a move-back of switched slots (if any) completed; n4 owns nothing.
      const grow = latest!.state === 'rolled_back' ? latest! : previous;
      if (grow?.state !== 'rolled_back') problems.push(`the grow migration is ${grow?.state ?? 'missing'}, not rolled back`);
      if (latest!.state !== 'rolled_back' && latest!.state !== 'completed') problems.push(`migration ${latest!.id} (move back) is ${latest!.state}: ${latest!.error ?? ''}`);
      const onN4 = final.map.owners.filter((owner) => owner === 'n4').length;
      if (onN4 > 0) problems.push(`n4 still owns ${onN4} slot(s) after the rollback`);
    } else {
      if (latest!.state !== 'completed') problems.push(`migration ${latest!.id} is ${latest!.state}: ${latest!.error ?? ''}`);
      const notDone = final.moves.filter((move) => move.state !== 'done');
      if (notDone.length > 0) problems.push(`moves not done: ${notDone.map((move) => `${move.slot}:${move.state}`).join(', ')}`);
    }
    // Orphans on every server, whatever the catalog says (replication slots are per server).
    for (const server of serverOf.values()) {
      const client = await connectTo(server.connection);
      try {
        const objects = await reshardReplicationObjects(client);
        for (const name of [...objects.publications, ...objects.subscriptions, ...objects.slots]) problems.push(`orphan on ${server.name}: ${name}`);
        // The online mover's row sums and a split's recorded keys (triggers and rows) end with the move or split, switched or
        // rolled back. A server that never took part has neither table.
        const triggers = await client.query<{ what: string }>(
          `SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text AS what FROM pg_trigger WHERE tgname LIKE 'reshard_row_sums%' OR tgname = 'reshard_changed_keys'`);
        for (const row of triggers.rows) problems.push(`orphan on ${server.name}: ${row.what}`);
        for (const table of ['reshard_node.leaf_row_sums', 'reshard_node.changed_keys']) {
          if (!(await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [table])).rows[0]!.present) continue;
          const rows = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`);
          if (rows.rows[0]!.n !== '0') problems.push(`orphan on ${server.name}: ${rows.rows[0]!.n} rows in ${table}`);
        }
      } finally {
        await client.end();
      }
    }
    phase('verify');
  } catch (error) {
    problems.push(`harness: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    if (run && run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    await workload?.stop().catch(() => {});
    await router?.close().catch(() => {});
    for (const proxy of proxies.values()) await proxy.close().catch(() => {});
    for (const server of servers) await server.start().catch(() => {});
    await Promise.all(servers.map((server) => dropDatabase(server, database).catch((error: unknown) => problems.push(`teardown of ${server.name}: ${String(error)}`))));
    phase('teardown');
    notes.push(`seconds: ${phases.join(', ')}`);
  }
  return { cell, ok: problems.length === 0, problems: [...new Set(problems)], notes, seconds: (Date.now() - started) / 1000 };
}

/**
 * A split cell ends split (resumed) or not split (rolled back: in place
 * before the switch, or merged back after it), whatever step the fault hit;
 * a merge cell the other way round; a split-all cell with every slot split,
 * or none; a split-to cell split with the new half on n3 (resumed) or whole
 * on n2 (rolled back: in place before the switch, by a move back and a merge
 * after it).
 */
function exchangeOutcomeProblems(cell: FaultCell, slot: number, map: SlotMap, latest: MigrationRecord, previous: MigrationRecord | undefined): string[] {
  const problems: string[] = [];
  const isSplit = (at: number): boolean => hasSlot(map, at + SLOTS) && slotModulus(map, at) === 2 * SLOTS && slotModulus(map, at + SLOTS) === 2 * SLOTS;
  const isWhole = (at: number): boolean => !hasSlot(map, at + SLOTS) && slotModulus(map, at) === SLOTS;
  const shape = (at: number): string => `slot ${at}: modulus ${slotModulus(map, at)}, slot ${at + SLOTS} ${hasSlot(map, at + SLOTS) ? `on ${map.owners[at + SLOTS]}` : 'absent'}`;
  const slots = cell.mover === 'split-all' ? Array.from({ length: SLOTS }, (_, at) => at) : [slot];
  const rolledBack = cell.victim === 'rollback';
  // Split at the end: a split, split-to or split-all resumed, a merge rolled back.
  const wantSplit = cell.mover === 'merge' ? rolledBack : !rolledBack;
  for (const at of slots) {
    if (wantSplit && !(isSplit(at) && (cell.mover === 'split-all' || map.owners[at] === 'n2'))) problems.push(`not split as expected after the ${rolledBack ? 'rollback' : 'resume'}: ${shape(at)}`);
    if (!wantSplit && !isWhole(at)) problems.push(`not whole as expected after the ${rolledBack ? 'rollback' : 'resume'}: ${shape(at)}`);
  }
  if (cell.mover === 'split-to') {
    if (!rolledBack && map.owners[slot + SLOTS] !== 'n3') problems.push(`slot ${slot + SLOTS} is on ${map.owners[slot + SLOTS] ?? 'no node'}, not n3`);
    if (map.owners[slot] !== 'n2') problems.push(`slot ${slot} is on ${map.owners[slot] ?? 'no node'}, not n2`);
  } else if (cell.mover === 'split-all' && !rolledBack) {
    for (let at = 0; at < SLOTS; at++) if (map.owners[at + SLOTS] !== map.owners[at]) problems.push(`slot ${at + SLOTS} is on ${map.owners[at + SLOTS]}, its sibling ${at} on ${map.owners[at]}`);
  }
  if (rolledBack) {
    // Before the switch rolled back in place; after it, the inverse (or the move back) completed.
    const takenBack = latest.state === 'rolled_back' || (latest.state === 'completed' && previous?.state !== undefined && ['completed', 'rolled_back'].includes(previous.state));
    if (!takenBack) problems.push(`after the rollback: migration ${latest.id} ${latest.state}, previous ${previous?.state ?? 'none'}`);
  } else if (latest.state !== 'completed') {
    problems.push(`migration ${latest.id} is ${latest.state}: ${latest.error ?? ''}`);
  }
  return problems;
}

async function createDatabase(server: LocalServer, database: string): Promise<void> {
  const client = await connectTo(server.connection);
  try {
    await client.query(`CREATE DATABASE ${database}`);
  } finally {
    await client.end();
  }
}

/**
 * Leaves the server as the cell found it, whatever the cell left: its
 * database (subscriptions first, detached from their slots) and every reshard
 * replication slot (slots belong to the server, and names repeat across cells).
 */
async function dropDatabase(server: LocalServer, database: string): Promise<void> {
  const inCell = await connectTo({ ...server.connection, database });
  try {
    const subscriptions = await inCell.query<{ subname: string }>('SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())');
    for (const { subname } of subscriptions.rows) {
      await inCell.query(`ALTER SUBSCRIPTION "${subname}" DISABLE`);
      await inCell.query(`ALTER SUBSCRIPTION "${subname}" SET (slot_name = NONE)`);
      await inCell.query(`DROP SUBSCRIPTION "${subname}"`);
    }
  } finally {
    await inCell.end();
  }
  const client = await connectTo(server.connection);
  try {
    await client.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name LIKE 'reshard%' AND active_pid IS NOT NULL`);
    await sleep(100);
    await client.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'reshard%' AND NOT active`);
    await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/** Rows = mover:step, columns = victims; then `N passed, M failed`. */
export function formatMatrix(results: readonly CellResult[]): string {
  const rows = (['online', 'offline', ...EXCHANGE_MOVERS] as const).flatMap((mover) => STEPS[mover].map((step) => ({ mover, step })))
    .filter((row) => results.some((result) => result.cell.mover === row.mover && result.cell.step === row.step));
  const columns = VICTIMS.filter((victim) => results.some((result) => result.cell.victim === victim));
  const label = (row: { mover: string; step: string }): string => `${row.mover}:${row.step}`;
  const width = Math.max(...rows.map((row) => label(row).length), 'step \\ victim'.length);
  const lines = [['step \\ victim'.padEnd(width), ...columns.map((column) => column.padEnd(11))].join('  ')];
  for (const row of rows) {
    const cells = columns.map((victim) => {
      const result = results.find((candidate) => candidate.cell.mover === row.mover && candidate.cell.step === row.step && candidate.cell.victim === victim);
      return (result ? (result.ok ? 'pass' : 'FAIL') : '-').padEnd(11);
    });
    lines.push([label(row).padEnd(width), ...cells].join('  '));
  }
  const passed = results.filter((result) => result.ok).length;
  lines.push('', `${passed} passed, ${results.length - passed} failed`);
  return lines.join('\n');
}
