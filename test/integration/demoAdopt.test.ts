import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

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

/**
 * `reshard demo --adopt` end to end, as a user runs it (the built CLI; needs
 * `npm run build`): one plain database with users, adopted online into four
 * nodes under writers through AdoptingTable, every row exactly once, servers stopped.
 */
describe('reshard demo --adopt --json', () => {
  it('adopts a plain users table into 4 nodes under 4 writers: verified, every loaded row and live insert once, only JSON on stdout, servers stopped', async () => {
    const runningBefore = demoServerDirs();
    // The demo passes its environment on to pg_ctl, and postgres refuses PGPORT='' (see cliEndToEnd.test.ts).
    const unsetPg = { PGHOST: undefined, PGPORT: undefined, PGDATABASE: undefined };
    const result = await runCli(['demo', '--adopt', '--rows', '5000', '--slots', '16', '--clients', '4', '--json'], unsetPg, 150_000);
    expect(result.code, `stderr: ${result.stderr}`).toBe(0);
    const lines = result.stdout.split('\n').filter((line) => line.length > 0);
    expect(lines).toHaveLength(1);
    const summary = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(summary).toMatchObject({ adopted: true, nodes: 4, slots: 16, rows_loaded: 5000, verified: true, client_errors: 0, missing: 0, duplicated: 0, unexpected: 0, kept: false });
    const writes = summary['writes_during'] as number;
    expect(writes).toBeGreaterThan(0);
    expect(summary['rows_after']).toBe(5000 + writes);
    // Rows adopted: the loaded ones and the inserts the old table took before the fence; the rest went by slot after the switch.
    expect(summary['rows_adopted']).toBeGreaterThanOrEqual(5000);
    expect(summary['rows_adopted']).toBeLessThanOrEqual(5000 + writes);

    // Progress on stderr: every adopt step, then the verification.
    for (const step of ['prepare', 'stream', 'freeze', 'sync', 'verify', 'attach', 'switch', 'cleanup']) expect(result.stderr).toMatch(new RegExp(`^ +${step} +done in`, 'm'));
    expect(result.stderr).toMatch(/Verified: yes/);

    // Every server the demo started (app and 4 nodes) is stopped.
    const ports = [...result.stderr.matchAll(/^\s+(?:app|n\d+): \S+@[^:\s]+:(\d+)\//gm)].map((match) => Number(match[1]));
    expect(ports).toHaveLength(5);
    for (const port of ports) expect(await portRefuses(port)).toBe(true);
    expect([...demoServerDirs()].filter((dir) => !runningBefore.has(dir))).toEqual([]);
  }, 180_000);
});
