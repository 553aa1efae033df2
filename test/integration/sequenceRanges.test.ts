import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import { rebalance } from '../../src/admin/rebalance.js';
import { assignSequenceRanges } from '../../src/admin/sequenceRanges.js';
import { readSlotMap } from '../../src/catalog/slotMap.js';
import { ReshardError } from '../../src/core/errors.js';
import { slotOf } from '../../src/core/hash.js';
import { sequenceBlockRange, SEQUENCE_BLOCK_VALUES } from '../../src/core/sequenceBlock.js';
import { tableSequenceStates, type SequenceState } from '../../src/node/sequenceRange.js';
import { withCatalog, type ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { Router } from '../../src/router/router.js';
import { accessFor } from '../support/cluster.js';
import { connectTo, startTestServers, type TestServers } from '../support/servers.js';

const SLOTS = 16;
const ROWS_PER_NODE = 120;

/**
 * Keys from sequences stay unique whichever node draws them: every node's
 * copy of a table's sequence is confined to its own block, set at table
 * create and at node add, and moves never touch it. Rows are written with
 * plain INSERTs on every node (orders: the node's own users, ids from the
 * node's DEFAULT) and through the router (users: the id drawn on a node, the
 * row routed by it), before and after a node is added and a rebalance moved
 * slots, and every id is checked: distinct across the cluster and inside the
 * block of the node that drew it.
 */
describe('keys from sequences on real PostgreSQL', () => {
  let cluster: TestServers;
  let access: ClusterAccess;
  let router: Router | undefined;
  /** Every id drawn, with the node that drew it. */
  const drawn: { table: 'users' | 'orders'; id: bigint; node: string }[] = [];

  const blocksOf = async (): Promise<Map<string, number>> => withCatalog(access, async (catalog) => {
    const result = await catalog.query<{ name: string; block: number }>("SELECT name, sequence_block AS block FROM reshard.node WHERE state <> 'removed'");
    return new Map(result.rows.map((row) => [row.name, row.block]));
  });

  const sequencesOn = async (index: number, table: string): Promise<SequenceState[]> => {
    const client = await connectTo(cluster.servers[index]!.connection);
    try {
      return await tableSequenceStates(client, { schema: 'public', name: table });
    } finally {
      await client.end();
    }
  };

  /** On each of the first `nodes` servers: orders by plain INSERT for users that node owns, users drawn there and routed. */
  const writeEverywhere = async (nodes: number, round: number): Promise<void> => {
    const slotMap = await withCatalog(access, (catalog) => readSlotMap(catalog));
    for (let index = 0; index < nodes; index++) {
      const name = `n${index + 1}`;
      const client = await connectTo(cluster.servers[index]!.connection);
      try {
        let userId = 1_000_000 * round + 1000 * index;
        for (let row = 0; row < ROWS_PER_NODE; row++) {
          while (slotMap.owners[slotOf('bigint', userId, SLOTS)] !== name) userId++;
          const inserted = await client.query<{ id: string }>('INSERT INTO orders (user_id, note) VALUES ($1, $2) RETURNING id', [userId, `r${round}`]);
          drawn.push({ table: 'orders', id: BigInt(inserted.rows[0]!.id), node: name });
          userId++;
          const next = await client.query<{ id: string }>("SELECT nextval(pg_get_serial_sequence('users', 'id'))::text AS id");
          const id = next.rows[0]!.id;
          await router!.query(id, 'INSERT INTO users (id, name) VALUES ($1, $2)', [id, `u${round}`]);
          drawn.push({ table: 'users', id: BigInt(id), node: name });
        }
      } finally {
        await client.end();
      }
    }
  };

  /** Every id of `table` on every node's attached partitions. */
  const idsEverywhere = async (table: 'users' | 'orders', nodes: number): Promise<bigint[]> => {
    const ids: bigint[] = [];
    for (let index = 0; index < nodes; index++) {
      const client = await connectTo(cluster.servers[index]!.connection);
      try {
        ids.push(...(await client.query<{ id: string }>(`SELECT id::text AS id FROM ${table}`)).rows.map((row) => BigInt(row.id)));
      } finally {
        await client.end();
      }
    }
    return ids;
  };

  const assertUniqueAndInBlocks = async (nodes: number): Promise<void> => {
    const blocks = await blocksOf();
    for (const table of ['users', 'orders'] as const) {
      const ids = await idsEverywhere(table, nodes);
      const expected = drawn.filter((entry) => entry.table === table);
      expect(ids).toHaveLength(expected.length);
      expect(new Set(ids).size).toBe(ids.length);
      expect(new Set(ids)).toEqual(new Set(expected.map((entry) => entry.id)));
    }
    const outside = drawn.filter((entry) => {
      const range = sequenceBlockRange(blocks.get(entry.node)!);
      return entry.id < range.min || entry.id > range.max;
    });
    expect(outside).toEqual([]);
  };

  beforeAll(async () => {
    cluster = await startTestServers(3, 'sq');
    access = accessFor(cluster.servers);
    await initCluster(access, SLOTS);
    await addNode(access, { name: 'n1', connection: cluster.servers[0]!.connection });
    await addNode(access, { name: 'n2', connection: cluster.servers[1]!.connection });
    await createShardedTable(access, { name: 'users', shardKey: ['id'], definition: 'id bigserial, name text, PRIMARY KEY (id)' });
    await createShardedTable(access, {
      name: 'orders', shardKey: ['user_id'], colocateWith: 'users',
      definition: 'user_id bigint NOT NULL, id bigserial, note text, PRIMARY KEY (user_id, id)',
    });
    router = await Router.connect({ catalog: access.catalog });
  }, 180_000);
  afterAll(async () => {
    await router?.close();
    await cluster?.stop();
  });

  it('gives every node its own block and confines each node\'s sequences to it at table create', async () => {
    const blocks = await blocksOf();
    expect([...blocks.keys()].sort()).toEqual(['n1', 'n2']);
    expect(new Set(blocks.values()).size).toBe(2);
    for (const [index, name] of ['n1', 'n2'].entries()) {
      const range = sequenceBlockRange(blocks.get(name)!);
      expect(range.min).toBeGreaterThanOrEqual(SEQUENCE_BLOCK_VALUES);
      for (const table of ['users', 'orders']) {
        expect(await sequencesOn(index, table)).toEqual([{ sequence: `public.${table}_id_seq`, column: 'id', min: range.min, max: range.max, next: range.min }]);
      }
    }
  });

  it('keeps ids unique across nodes for plain INSERTs on every node and routed rows', async () => {
    await writeEverywhere(2, 1);
    await assertUniqueAndInBlocks(2);
  });

  it('gives an added node a new block; a rebalance moves rows and touches no sequence; ids stay unique', async () => {
    const before = [await sequencesOn(0, 'orders'), await sequencesOn(1, 'orders'), await sequencesOn(0, 'users'), await sequencesOn(1, 'users')];
    await addNode(access, { name: 'n3', connection: cluster.servers[2]!.connection });
    const blocks = await blocksOf();
    const n3Range = sequenceBlockRange(blocks.get('n3')!);
    expect(new Set(blocks.values()).size).toBe(3);
    expect(await sequencesOn(2, 'orders')).toEqual([{ sequence: 'public.orders_id_seq', column: 'id', min: n3Range.min, max: n3Range.max, next: n3Range.min }]);
    const grown = await rebalance(access, { mode: 'online', dryRun: false, moveConcurrencyMax: 2, emit: () => {} });
    expect(grown.summary?.state).toBe('completed');
    expect(grown.summary?.slotsMoved ?? 0).toBeGreaterThan(0);
    expect([await sequencesOn(0, 'orders'), await sequencesOn(1, 'orders'), await sequencesOn(0, 'users'), await sequencesOn(1, 'users')]).toEqual(before);
    // Moved rows arrived on n3 with the keys n1 and n2 drew; n3 draws from its own block beside them.
    const n3 = await connectTo(cluster.servers[2]!.connection);
    try {
      expect(Number((await n3.query<{ n: string }>('SELECT count(*)::text AS n FROM orders')).rows[0]!.n)).toBeGreaterThan(0);
    } finally {
      await n3.end();
    }
    await writeEverywhere(3, 2);
    await assertUniqueAndInBlocks(3);
  });

  it('assignSequenceRanges (for adopt) is idempotent: no sequence goes back', async () => {
    const before = [await sequencesOn(0, 'orders'), await sequencesOn(1, 'orders'), await sequencesOn(2, 'orders')];
    const assigned = await assignSequenceRanges(access, { schema: 'public', name: 'orders' });
    expect([assigned.get('n1'), assigned.get('n2'), assigned.get('n3')]).toEqual(before);
    expect([await sequencesOn(0, 'orders'), await sequencesOn(1, 'orders'), await sequencesOn(2, 'orders')]).toEqual(before);
  });

  it('refuses a table whose column is fed by an int4 sequence, creating nothing', async () => {
    const refused = await createShardedTable(access, { name: 'events', shardKey: ['id'], definition: 'id serial, PRIMARY KEY (id)' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ReshardError);
    expect((refused as ReshardError).line()).toBe(
      'column "id" of events is integer, fed by sequence public.events_id_seq (integer): every node draws its keys from its own block of 2^48 values, which only bigint holds. ' +
      'Fix: make it bigint: bigserial instead of serial, or GENERATED … AS IDENTITY on a bigint column');
    for (const server of cluster.servers) {
      const client = await connectTo(server.connection);
      try {
        expect((await client.query("SELECT to_regclass('events') AS t")).rows[0].t).toBeNull();
      } finally {
        await client.end();
      }
    }
  });
});
