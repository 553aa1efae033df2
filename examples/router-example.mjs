// A runnable router example. Start a cluster first and keep it running:
//   npx reshard demo --keep        (prints the catalog address)
//   RESHARD_CATALOG=postgres://postgres@127.0.0.1:PORT/postgres node examples/router-example.mjs
import { Router } from 'reshard/router';

const url = new URL(process.env.RESHARD_CATALOG ?? 'postgres://postgres@127.0.0.1:5432/postgres');
const router = await Router.connect({
  catalog: { host: url.hostname, port: Number(url.port || 5432), database: url.pathname.slice(1) || 'postgres', user: url.username || 'postgres' },
  name: 'router-example',
  leaseMs: 5_000,        // life of the registration in the catalog (the router serves through catalog outages)
  holdTimeoutMs: 10_000, // longest a call waits for a slot that is being switched
});

try {
  // One key, one node: the router computes the slot locally, exactly as PostgreSQL does.
  const user = await router.query(42, 'SELECT id, name FROM users WHERE id = $1', [42]);
  console.log('user 42 lives in slot', router.slotOf(42), '→', user.rows[0]);

  // A transaction on the node that owns user 42's slot (orders are colocated by user_id).
  await router.transaction(42, async (client) => {
    await client.query('INSERT INTO orders (user_id, id, amount) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [42, 4_200_001, 9.99]);
    await client.query("UPDATE users SET name = 'user 42 (has orders)' WHERE id = $1", [42]);
  });

  // Cross-slot work is explicit: once per node.
  const counts = await router.eachNode(async (client) => (await client.query('SELECT count(*)::int AS n FROM users')).rows[0].n);
  console.log('users per node:', Object.fromEntries(counts));
} finally {
  await router.close();
}
