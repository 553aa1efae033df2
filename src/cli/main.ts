import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { badInput, ReshardError } from '../core/errors.js';
import { configureLogging, errorFields, log, LOG_LEVELS, type LogLevel } from '../plumbing/log.js';
import { InvariantViolation } from '../core/assert.js';
import { resolveAccess, type GlobalOptions } from './config.js';
import { Output } from './output.js';
import { dropOutputOnceReaderCloses } from './closedOutput.js';
import { slotCommand, slotOfCommand, initCommand, nodeAddCommand, nodeListCommand, nodeRemoveCommand, nodeSetCommand, tableCreateCommand, tableListCommand, tableSetHolderCommand, verifyCommand } from './commands/clusterCommands.js';
import { planCommand } from './commands/planCommand.js';
import { cancelCommand, pauseCommand, rebalanceCommand, resumeCommand } from './commands/rebalanceCommands.js';
import { statusCommand, waitCommand } from './commands/statusCommand.js';
import { rollbackCommand } from './commands/rollbackCommand.js';
import { mergeCommand, splitCommand } from './commands/splitCommands.js';
import { demoCommand } from './commands/demoCommand.js';
import { checkCommand } from './commands/checkCommand.js';
import { doctorCommand } from './commands/doctorCommand.js';
import { dashboardCommand } from './commands/dashboardCommand.js';
import { loadCommand } from './commands/loadCommand.js';
import { adoptCheckCommand, adoptCommand, forgetSourceCommand } from './commands/adoptCommands.js';
import { loadReportCommand } from './commands/loadReportCommand.js';
import { autopilotCommand } from './commands/autopilotCommand.js';

/** Thrown by a command that ran but whose answer is "no" (verify found problems). */
class CommandFailed extends Error {}

const logger = log('cli');

/** The version in package.json (two levels up from both src/cli and dist/cli). */
export function reshardVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

interface LoggingCommandOptions { logLevel?: LogLevel; logFile?: string }

/** --log-file alone logs from info; without it, warnings and errors go to stderr (never stdout: --json stays clean). */
function loggingFrom(options: LoggingCommandOptions): { level: LogLevel; file: string | undefined } {
  return { level: options.logLevel ?? (options.logFile ? 'info' : 'warn'), file: options.logFile };
}

function buildProgram(state: { output: Output; logFile?: string | undefined }): Command {
  const program = new Command('reshard')
    .description('Grow or shrink a hash-sharded PostgreSQL cluster by moving whole slots: the fewest that balance needs, verified and journaled.')
    .option('--catalog <url>', 'catalog database, postgres://user@host:port/db (else reshard.json, RESHARD_CATALOG or PG* variables)')
    .option('--config <file>', 'JSON config file (default ./reshard.json if present)')
    .option('--json', 'machine-readable output: JSON lines, the last one the result')
    .addOption(new Option('--log-level <level>', 'structured log (JSON lines) from this level: info logs every step and wait (default: info with --log-file, else warn)').choices(LOG_LEVELS))
    .option('--log-file <path>', 'append the log to this file instead of stderr')
    .version(reshardVersion(), '-V, --version', 'print the version of reshard')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      // Commander's own errors (unknown command or option, a missing argument, a bad choice) in reshard's one-line form.
      outputError: (text, write) => write(`reshard: error: ${text.replace(/^error: /, '').trim().replace(/\.$/, '')}. Fix: see \`reshard --help\` or \`reshard <command> --help\`\n`),
    });

  const globals = (): GlobalOptions & { json?: boolean } => program.opts();
  const output = (): Output => {
    state.output = new Output(Boolean(globals().json));
    return state.output;
  };
  const access = () => resolveAccess(globals());
  program.hook('preAction', (_program, command) => {
    const logging = loggingFrom(globals() as LoggingCommandOptions);
    try {
      configureLogging(logging);
    } catch (error) {
      throw badInput(`--log-file ${logging.file ?? ''} cannot be written (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, 'pass a file in a directory reshard may write to');
    }
    state.logFile = logging.file;
    // The command's name only: arguments can hold a catalog URL with its password.
    logger.info({ command: command.name(), version: reshardVersion() }, `reshard ${command.name()}`);
  });

  program.command('init')
    .description('create or upgrade the catalog schema and fix the slot count')
    .option('--slots <M>', 'number of slots (hash partitions per table), fixed for the cluster', '256')
    .action(async (options: { slots?: string }) => initCommand(output(), access(), options));

  const node = program.command('node').description('add, change, remove and list data nodes');
  node.command('add <name>')
    .description('check a PostgreSQL server (reachable, version, settings) and add it as a node')
    .option('--url <url>', 'the node as reshard reaches it: postgres://user@host:port/database?sslmode=… or key=value conninfo')
    .option('--peer-url <url>', 'the node as the other nodes reach it to replicate (default: --url); sslrootcert etc. are paths on their machines')
    .option('--weight <w>', 'share of slots relative to other nodes', '1')
    .option('--concurrency <n>', 'moves at once that may involve this node', '2')
    .option('--capacity <bytes>', 'bytes this node may hold, e.g. 500GB')
    .action(async (name: string, options) => nodeAddCommand(output(), access(), name, options));
  node.command('set <name>')
    .description('change a node\'s address (same database only), peer address, weight, concurrency or capacity')
    .option('--url <url>', 'a new address of the same database, as reshard reaches it')
    .option('--peer-url <url>', 'the address the other nodes replicate from')
    .option('--weight <w>', 'share of slots relative to other nodes')
    .option('--concurrency <n>', 'moves at once that may involve this node')
    .option('--capacity <bytes>', 'bytes this node may hold, e.g. 500GB')
    .action(async (name: string, options) => nodeSetCommand(output(), access(), name, options));
  node.command('remove <name>')
    .description('drain a node: its slots move away at the next rebalance, then it is removed')
    .action(async (name: string) => nodeRemoveCommand(output(), access(), name));
  node.command('list').description('list nodes with their state and slot counts')
    .action(async () => nodeListCommand(output(), access()));

  const table = program.command('table').description('create and list sharded and reference tables');
  table.command('create <name>')
    .description('create a hash-partitioned table on every node, each with the partitions of the slots it owns; with --reference, a small table kept whole on every node')
    .option('--key <columns>', 'shard key column(s), comma-separated')
    .option('--reference', 'a reference table: whole on every node, written on its holder, replicated to the others (needs a primary key, no --key)')
    .option('--holder <node>', 'with --reference: the node that takes the writes (default: the first active node)')
    .option('--columns <sql>', "column and constraint list, e.g. 'id bigint NOT NULL, payload text, PRIMARY KEY (id)'")
    .option('--colocate-with <table>', 'share the slot space of this table (same key types)')
    .option('--schema <schema>', 'schema of the table', 'public')
    .action(async (name: string, options) => tableCreateCommand(output(), access(), name, options));
  table.command('set-holder <name> <node>')
    .description('move a reference table\'s holder (the node that takes its writes) to another node, no write lost')
    .option('--schema <schema>', 'schema of the table', 'public')
    .action(async (name: string, node: string, options) => tableSetHolderCommand(output(), access(), name, node, options));
  table.command('adopt-check <name>')
    .description('every reason an existing plain table cannot be adopted (sharded, or with --reference), one line each with its fix; exits non-zero if any; changes nothing')
    .option('--from <urls>', 'the server(s) that hold the table: postgres://user@host:port/db, comma-separated for several')
    .option('--key <columns>', 'shard key column(s), comma-separated')
    .option('--reference', 'check it as a reference table (no --key; --from must be a node of the cluster)')
    .option('--colocate-with <table>', 'share the slot space of this sharded table')
    .option('--schema <schema>', 'schema of the table', 'public')
    .option('--headroom <percent>', 'share of each node\'s capacity that must stay free (default 10%)')
    .action(async (name: string, options) => {
      if (!(await adoptCheckCommand(output(), access(), name, options))) throw new CommandFailed(`${name} cannot be adopted. Fix: follow the Fix of each problem line, then check again`);
    });
  table.command('adopt <name>')
    .description('turn an existing plain table (on one server, or spread over several by any scheme) into a sharded table, online: copy, follow changes, fence, verify, switch')
    .option('--from <urls>', 'the server(s) that hold the table, comma-separated (may be nodes of the cluster)')
    .option('--key <column>', 'the shard key column (part of the primary key)')
    .option('--colocate-with <table>', 'share the slot space of this table (same key type)')
    .option('--schema <schema>', 'schema of the table', 'public')
    .option('--reference', 'adopt it as a reference table: it stays on its node (--from), which becomes its holder, and every other node gets a copy')
    .option('--source-of <sql>', 'several sources: the source of a key as SQL over the key column, its position in --from from 0 (e.g. "id % 3"); a rollback sends keys new since the switch there (default: the first source)')
    .option('--headroom <percent>', 'share of each node\'s capacity that must stay free (default 10%)')
    .option('--dry-run', 'print the steps an adoption takes, without doing them')
    .action(async (name: string, options) => adoptCommand(output(), access(), name, options));
  table.command('forget-source <name>')
    .description('drop the old table an adoption kept fenced (after this, `reshard rollback` cannot take the adoption back)')
    .option('--schema <schema>', 'schema of the table', 'public')
    .action(async (name: string, options) => forgetSourceCommand(output(), access(), name, options));
  table.command('list').description('list sharded and reference tables')
    .action(async () => tableListCommand(output(), access()));

  program.command('load <table> [file]')
    .description('load rows (COPY text or CSV; a file or - for standard input) into a sharded table, each row sent to the node that owns its slot; all or nothing')
    .option('--format <format>', 'text (COPY\'s default: tab-separated, \\N for NULL) or csv; default csv for a .csv file, else text')
    .option('--header', 'CSV: the first line names the columns')
    .option('--columns <list>', 'the columns each line holds, comma-separated (default: the CSV header, else the table\'s columns in order)')
    .action(async (tableName: string, file: string | undefined, options) => loadCommand(output(), access(), tableName, file, options));

  program.command('load-report')
    .description('load per node against its weighted share, and the busiest slots: from routers\' reports (calls/s, rows written, p50/p99), else sampled from the nodes\' counters')
    .option('--window <duration>', 'routers\' reports over this long, ending now', '60s')
    .option('--sample <duration>', 'without router reports: read the nodes\' counters twice, this far apart', '5s')
    .option('--source <source>', 'auto (routers when any reported, else nodes), routers or nodes', 'auto')
    .option('--top <n>', 'busiest slots to list', '20')
    .action(async (options) => loadReportCommand(output(), access(), options));

  program.command('autopilot')
    .description('watch load (routers\' reports, else the nodes\' counters) and move slots by load when a node stays over its weighted share; one active per catalog (a lease), every decision journaled')
    .option('--once', 'evaluate once and act on it (then stop)')
    .option('--dry-run', 'with --once: print what it would do now and why, change nothing; without: watch and journal, never act')
    .option('--period <duration>', 'one measurement period', '60s')
    .option('--sustain <n>', 'periods in a row a node must be over its share before it acts', '3')
    .option('--tolerance <percent>', 'over its share means beyond this much above it', '10%')
    .option('--floor <load>', 'and by more than this much load (calls/s) above it', '10')
    .option('--min-benefit <load>', 'no move that removes less load than this per MiB moved', '0')
    .option('--bytes-tolerance <percent>', 'a node holding beyond this much above its weighted share of the bytes…', '20%')
    .option('--bytes-floor <size>', '…and more than this many bytes above it, for --sustain periods, moves slots by bytes', '256MB')
    .option('--headroom <percent>', 'a node with less than this share of its capacity free moves slots off at once', '10%')
    .option('--cooldown <duration>', 'a slot the autopilot moved stays where it is this long', '30m')
    .option('--max-moves <n>', 'moves per migration it starts', '8')
    .option('--window <HH:MM-HH:MM>', 'UTC window in which it may move slots (repeat for several; default: any time)', (value: string, previous: string[] = []) => [...previous, value])
    .option('--mode <mode>', 'online or offline', 'online')
    .option('--concurrency <n>', 'moves at once (each node also within its own limit)')
    .option('--lease <duration>', 'how long its lease lives without renewal (a second autopilot waits that long after a crash)', '30s')
    .option('--sample <duration>', 'without router reports, --once reads the nodes\' counters twice this far apart', '5s')
    .option('--max-latency-impact <factor>', 'keep the other slots\' p99 (routers\' reports; a probe query where no router reports) within this factor of its level before the migration, by slowing and pausing copies, e.g. 1.2')
    .option('--max-copy-rate <size>', 'cap on the bytes per second all copies of its migrations move together, e.g. 50MB')
    .option('--metrics-port <port>', 'serve Prometheus GET /metrics on this port (0 picks a free one; the address is printed)')
    .option('--metrics-host <host>', 'address /metrics listens on (default 127.0.0.1)')
    .action(async (options) => autopilotCommand(output(), access(), options));

  program.command('slot <N>')
    .description("a slot's owner and, per table, its rows, order-independent checksum and size")
    .option('--node <name>', 'read from this node instead of the owner')
    .action(async (slot: string, options) => slotCommand(output(), access(), slot, options));

  program.command('slot-of <table> <key...>')
    .description("a key's slot and owner node, computed as PostgreSQL routes the row (the same as SQL `SELECT * FROM reshard.slot_of('users', 42::bigint)` in the catalog); a multi-column key takes one value per column")
    .action(async (table: string, key: string[]) => slotOfCommand(output(), access(), table, key));

  program.command('plan')
    .description('show the moves a rebalance would make; with --nodes/--add/--remove, for a hypothetical cluster (no database needed)')
    .option('--compare', 'compare with contiguous hash ranges and hash mod N')
    .option('--nodes <n>', 'hypothetical cluster: nodes before')
    .option('--add <k>', 'hypothetical cluster: nodes added')
    .option('--remove <k>', 'hypothetical cluster: nodes removed')
    .option('--slots <M>', 'hypothetical cluster: slot count', '256')
    .action(async (options) => planCommand(output(), options, access));

  program.command('rebalance')
    .description('plan and run a migration that balances slots over the nodes')
    .option('--dry-run', 'print the moves (one line each: slot, source → target, size, tables, batch or wave) without doing them')
    .option('--verbose', 'with --dry-run: also every step of every move')
    .option('--concurrency <n>', 'moves in flight at once across the cluster', '4')
    .addOption(new Option('--mode <mode>', 'online: logical replication, writes pause per slot for milliseconds; offline: fenced COPY, the moving slot refuses writes while it moves').choices(['online', 'offline']).default('online'))
    .option('--max-copy-rate <size>', 'cap on the bytes of slots (their size on disk, as progress counts) all copies move per second together, e.g. 50MB')
    .option('--max-lag <size>', 'hold copying while a subscription lags more than this (default 256MiB)')
    .option('--max-wal-retained <size>', 'stop the migration if a source retains more WAL than this for it (default 8GiB)')
    .option('--max-latency-impact <factor>', 'keep the other slots\' p99 (routers\' reports; a probe query where no router reports) within this factor of its level before the migration, by slowing and pausing copies, e.g. 1.2')
    .option('--headroom <percent>', 'share of each node\'s capacity that must stay free while moving (default 10%)')
    .action(async (options) => rebalanceCommand(output(), access(), options));

  program.command('resume')
    .description('continue a paused migration, or an interrupted one from its journal')
    .option('--concurrency <n>', 'moves in flight at once across the cluster (interrupted migrations)', '4')
    .option('--max-copy-rate <size>', 'cap on the bytes of slots (their size on disk, as progress counts) all copies move per second together, e.g. 50MB')
    .option('--max-lag <size>', 'hold copying while a subscription lags more than this (default 256MiB)')
    .option('--max-wal-retained <size>', 'stop the migration if a source retains more WAL than this for it (default 8GiB)')
    .option('--max-latency-impact <factor>', 'keep the other slots\' p99 (routers\' reports; a probe query where no router reports) within this factor of its level before the migration, by slowing and pausing copies, e.g. 1.2')
    .action(async (options) => resumeCommand(output(), access(), options));

  program.command('pause')
    .description('hold the running migration before its next step (steps in flight finish); `reshard resume` continues it')
    .action(async () => pauseCommand(output(), access()));

  program.command('cancel')
    .description('stop the running migration: no new step starts, moves that have not switched are rolled back')
    .action(async () => cancelCommand(output(), access()));

  program.command('rollback')
    .description('undo the latest migration: unswitched moves in place, switched slots moved back')
    .option('--migration <id>', 'the migration to roll back (must be the latest)')
    .option('--slot <n>', 'only this slot\'s move')
    .option('--concurrency <n>', 'moves in flight at once while moving slots back', '4')
    .action(async (options) => rollbackCommand(output(), access(), options));

  program.command('split')
    .description('split one slot in two, online: slot N of modulus m becomes N and N + m of modulus 2m, on its node or with --to the new slot on another node, each row copied once (run again after a crash to resume it; `reshard rollback` merges it back); --all splits every slot, one at a time, as one migration')
    .option('--slot <n>', 'the slot to split')
    .option('--all', 'split every slot (doubles each modulus) as one migration with progress, pause/resume/cancel and status; run again or `reshard resume` after a crash')
    .option('--to <node>', 'place the new slot N + m on this node in the same operation (its half of the rows copied there once, straight from the slot)')
    .option('--dry-run', 'print the steps, change nothing')
    .action(async (options) => splitCommand(output(), access(), options));

  program.command('merge')
    .description('merge a split slot and its sibling (on one node) back into their parent, online')
    .requiredOption('--slot <n>', 'either of the two sibling slots')
    .option('--dry-run', 'print the steps, change nothing')
    .action(async (options) => mergeCommand(output(), access(), options));

  program.command('status').description('show the current or last migration and its moves')
    .option('--migration <id>', 'show this migration instead of the latest')
    .option('--watch', 'redraw every second on a terminal (else print a line per change) until the migration ends; exits with its exit code')
    .action(async (options) => statusCommand(output(), access(), options));

  program.command('wait')
    .description('block until the running (or given) migration ends: exit 0 if it completed, non-zero if it failed, was cancelled or rolled back, or the timeout passed')
    .option('--migration <id>', 'wait for this migration instead of the latest')
    .option('--timeout <duration>', 'give up after this long, e.g. 90s, 30m, 4h (default 24h)')
    .action(async (options) => waitCommand(output(), access(), options));

  program.command('dashboard')
    .description('serve a live web page (and JSON API, Prometheus /metrics) for the cluster in the catalog, until Ctrl-C')
    .option('--host <address>', 'address to listen on (loopback by default)', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', '7463')
    .action(async (options) => dashboardCommand(output(), access(), options));

  program.command('verify').description('check that every slot is attached on its owner only, and count rows')
    .action(async () => {
      if (!(await verifyCommand(output(), access()))) throw new CommandFailed('verification found problems');
    });

  program.command('doctor')
    .description('preflight and drift checks of the catalog and every node, one line per finding with its fix')
    .option('--fix', 'remove leftovers no running migration owns: subscriptions, replication slots, publications, fence triggers, staged leaves (never ownership)')
    .action(async (options: { fix?: boolean }) => {
      const report = await doctorCommand(output(), access(), options);
      if (report.errors > 0) {
        throw new CommandFailed(`doctor found ${report.errors} error(s). Fix: follow the Fix of each error line${options.fix ? '' : ' (`reshard doctor --fix` removes leftovers)'}`);
      }
    });

  program.command('check')
    .description('consistency check on local servers: clients write through a router while the cluster grows 3 → 4 and shrinks back; every acknowledged write is proven')
    .option('--clients <n>', 'concurrent clients', '8')
    .option('--slots <M>', 'slot count', '64')
    .option('--counters <n>', 'counters the clients increment', '256')
    .addOption(new Option('--mode <mode>', 'mover').choices(['online', 'offline']).default('online'))
    .action(async (options) => {
      if (!(await checkCommand(output(), options))) throw new CommandFailed('the consistency check found violations');
    });

  program.command('demo')
    .description('start a local cluster of real PostgreSQL servers, load data, add a node and rebalance it')
    .option('--nodes <n>', 'nodes before', '3')
    .option('--add <k>', 'nodes to add', '1')
    .option('--rows <n>', 'users to load (and as many orders)', '100000')
    .option('--slots <M>', 'slot count', '256')
    .option('--concurrency <n>', 'moves in flight at once')
    .addOption(new Option('--mode <mode>', 'mover').choices(['online', 'offline']).default('online'))
    .option('--clients <n>', 'clients writing through a router during the rebalance', '8')
    .option('--split', 'the gradual expansion: split every slot (`split --all`, under the live writes) before the rebalance onto the added node')
    .option('--keep', 'leave the servers running afterwards (it prints the catalog URL and how to stop them)')
    .option('--stop <dir>', 'stop the servers a `demo --keep` left in this directory and remove it')
    .option('--adopt', 'start instead from one plain database holding users and adopt it into --nodes + --add nodes, online, under --clients writers')
    .option('--dashboard', 'serve the live dashboard during the demo (the address and control token are printed)')
    .option('--dashboard-host <address>', 'dashboard address (loopback by default)')
    .option('--dashboard-port <n>', 'dashboard port (0: any free port)', '7463')
    .option('--dashboard-linger <seconds>', 'keep the dashboard up this long after the rebalance (Ctrl-C stops sooner)', '60')
    .action(async (options) => {
      if (!(await demoCommand(output(), options))) throw new CommandFailed('the demo could not verify the data');
    });

  return program;
}

/** Runs the CLI; returns the exit code. Errors become one line on stderr. */
export async function main(argv: readonly string[]): Promise<number> {
  dropOutputOnceReaderCloses();
  const state: { output: Output; logFile?: string | undefined } = { output: new Output(argv.includes('--json')) };
  const program = buildProgram(state);
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    // On stderr the `reshard: error:` line is the record; a log file gets it too.
    if (state.logFile) logger.error(errorFields(error), 'the command failed');
    if (error instanceof ReshardError) {
      state.output.error(error.line());
      state.output.result({ error: { code: error.code, message: error.message, fix: error.fix } });
      return error.exitCode;
    }
    if (error instanceof CommandFailed) {
      state.output.error(error.message);
      return 1;
    }
    if (error instanceof InvariantViolation) {
      state.output.error(`${error.message} (a bug in reshard; please report it)`);
      return 70;
    }
    const pgError = error as { code?: string; message?: string };
    if (typeof pgError.code === 'string' && pgError.message) {
      state.output.error(`PostgreSQL error ${pgError.code}: ${pgError.message}`);
      return 1;
    }
    throw error;
  }
}
