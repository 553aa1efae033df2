import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rebalance } from '../../src/admin/rebalance.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import type { ConnectionSettings } from '../../src/core/connection.js';
import { slotOf } from '../../src/core/hash.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 4;
const psqlPath = join(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim(), 'psql');

/** Runs a script with psql, as an application in any language would send it; returns exit status, stdout and stderr. */
function psql(connection: ConnectionSettings, script: string): { status: number | null; out: string; err: string } {
  const run = spawnSync(psqlPath, ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose',
    '-h', connection.host, '-p', String(connection.port), '-U', connection.user, '-d', connection.database], { input: script, encoding: 'utf8' });
  return { status: run.status, out: run.stdout.trim(), err: run.stderr };
}

/**
 * The router's contract with plain SQL, no reshard code on the client side:
 * compute the slot, read the owner and epoch from the catalog, send
 * `SELECT reshard_node.route(slot, epoch)` in the transaction, and act on the
 * refusal (RSM01 frozen: wait and retry; RSM02 moved: retry on the owner in DETAIL).
 */
describe('routing with plain SQL from psql', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  beforeAll(async () => {
    cluster = await startTestServers(3, 'psql');
    access = { catalog: cluster.servers[2]!.connection, passwords: noPasswords };
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await createShardedTable(access, { name: 'counters', shardKey: ['k'], definition: 'k bigint PRIMARY KEY, n bigint NOT NULL' });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('a BEGIN; route; UPDATE; COMMIT routed before a switch is refused with the new owner, and succeeds there', async () => {
    const catalog = cluster.servers[2]!.connection;
    const n1 = cluster.servers[0]!.connection;
    // One key per slot, so that whichever slots the plan moves, some key's route goes stale.
    const keys = Array.from({ length: SLOTS }, (_, slot) => { let key = 1; while (slotOf('bigint', key, SLOTS) !== slot) key++; return key; });
    // 1. The slot: computed by any node with PostgreSQL's own function (or src/core/hash.ts's algorithm).
    for (const [slot, key] of keys.entries()) {
      expect(Number(psql(n1, `SELECT r FROM generate_series(0, ${SLOTS - 1}) r WHERE satisfies_hash_partition('counters'::regclass, ${SLOTS}, r, ${key}::bigint)`).out)).toBe(slot);
    }
    // 2. The owners and epoch from the catalog, cached by the client.
    const mapNow = (): { owners: string[]; epoch: number } => {
      const [owners, epoch] = psql(catalog, `SELECT string_agg(owner, ',' ORDER BY slot) || '|' || (SELECT epoch FROM reshard.cluster) FROM reshard.slot`).out.split('|');
      return { owners: owners!.split(','), epoch: Number(epoch) };
    };
    const cached = mapNow();
    const increment = (slot: number, epoch: number): string =>
      `BEGIN;\nSELECT reshard_node.route(${slot}, ${epoch});\nINSERT INTO counters (k, n) VALUES (${keys[slot]}, 1) ON CONFLICT (k) DO UPDATE SET n = counters.n + 1 RETURNING n;\nCOMMIT;\n`;
    for (let slot = 0; slot < SLOTS; slot++) expect(psql(n1, increment(slot, cached.epoch))).toMatchObject({ status: 0, err: '', out: '1' });

    // 3. Slots move to a new node n2; this client does not look at the catalog again.
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    const result = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 2, emit: () => {} });
    expect(result.summary?.state).toBe('completed');
    const moved = mapNow().owners.flatMap((owner, slot) => (owner === 'n2' ? [slot] : []));
    expect(moved.length).toBe(SLOTS / 2);
    const n2 = cluster.servers[1]!.connection;
    for (let slot = 0; slot < SLOTS; slot++) {
      const stale = psql(n1, increment(slot, cached.epoch));
      if (!moved.includes(slot)) {
        expect(stale).toMatchObject({ status: 0, err: '', out: '2' });
        continue;
      }
      // 4. The stale route is refused by the old owner (after cleanup: its leaf is gone), before the INSERT runs.
      expect(stale.status).not.toBe(0);
      expect(stale.err).toMatch(/ERROR: {2}RSM02: reshard: slot \d+ moved to node n2/);
      const detail = JSON.parse(/DETAIL: {2}(\{.*\})/.exec(stale.err)![1]!) as { owner: string; epoch: number; state: string; slot: number };
      expect(detail).toMatchObject({ state: 'moved', owner: 'n2', slot });
      expect(detail.epoch).toBeGreaterThan(cached.epoch);
      // 5. Re-routed to the owner named in DETAIL (its address from the catalog's node list), at the redirect's epoch.
      expect(psql(n2, increment(slot, detail.epoch))).toMatchObject({ status: 0, err: '', out: '2' });
      // 6. Without the check, the same statement on the old owner would have been a silent no-op.
      expect(psql(n1, `UPDATE counters SET n = n + 1 WHERE k = ${keys[slot]} RETURNING n;`)).toMatchObject({ status: 0, out: '' });
    }
  });

  it('a frozen slot is refused with RSM01 (wait, then retry): the fence writes the node\'s slot state', async () => {
    const n2 = cluster.servers[1]!.connection;
    const slot = 0;
    const node = await connectTo(n2);
    const before = (await node.query('SELECT state, epoch, owner FROM reshard_node.slot_state WHERE slot = $1', [slot])).rows[0] as { state: string; epoch: string; owner: string | null } | undefined;
    try {
      // What the fence writes on the source (in its own transaction); set by hand here to read the refusal.
      await node.query("INSERT INTO reshard_node.slot_state (slot, state, epoch) VALUES ($1, 'frozen', 1) ON CONFLICT (slot) DO UPDATE SET state = 'frozen', owner = NULL", [slot]);
      const frozen = psql(n2, `BEGIN;\nSELECT reshard_node.route(${slot}, 1);\nSELECT 1;\nCOMMIT;\n`);
      expect(frozen.status).not.toBe(0);
      expect(frozen.err).toMatch(/ERROR: {2}RSM01: reshard: slot \d+ is frozen on this node while it moves/);
      await node.query("UPDATE reshard_node.slot_state SET state = 'owned', owner = NULL WHERE slot = $1", [slot]);
      expect(psql(n2, `BEGIN;\nSELECT reshard_node.route(${slot}, 1);\nSELECT 1;\nCOMMIT;\n`).status).toBe(0);
    } finally {
      if (before) await node.query('UPDATE reshard_node.slot_state SET state = $2, epoch = $3, owner = $4 WHERE slot = $1', [slot, before.state, before.epoch, before.owner]);
      else await node.query('DELETE FROM reshard_node.slot_state WHERE slot = $1', [slot]);
      await node.end();
    }
  });
});
