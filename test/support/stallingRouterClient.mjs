// A child process for test/integration/routerStall.test.ts: an application that
// writes through a Router (transactions that read then increment, single-statement
// increments, inserts) while the test SIGSTOPs and SIGCONTs it at random instants.
// Plain ESM on the built library (dist/), so the same file drives any build of the
// router: RESHARD_ROUTER_MODULE names the module to load.
//   parent → child: { stop: true }
//   child → parent: { ready: true }, { log }
const config = JSON.parse(process.env.RESHARD_STALL_CLIENT ?? '{}');
const { Router } = await import(process.env.RESHARD_ROUTER_MODULE);

/** Failures the router guarantees were not applied (codes of RoutedCallError with retryable = true). */
const NOT_APPLIED = new Set(['RESHARD_NODE_UNREACHABLE', 'RESHARD_TRANSACTION_ENDED', 'RESHARD_SLOT_FROZEN', 'RESHARD_ROUTE_UNRESOLVED']);

const log = {
  incrementsAcked: {}, incrementsUnknown: {}, insertedAcked: [], insertedUnknown: [],
  anomalies: [], errors: [], unknownErrors: [], notApplied: 0, transactionsAcrossStall: 0, operations: 0,
};
const count = (map, key) => { map[key] = (map[key] ?? 0) + 1; };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const router = await Router.connect({ catalog: config.catalog, name: 'stalling client', leaseMs: config.leaseMs, poolSizePerNode: config.clients,
  ...(config.routeLeases === undefined ? {} : { routeLeases: config.routeLeases }) });
let running = true;

async function call(kind, key, work, acked, unknown) {
  log.operations++;
  try {
    const rowCount = await work();
    if (rowCount !== 1) {
      // Acknowledged, yet it changed nothing: the silent 0-row result this test exists to catch.
      log.anomalies.push(`${kind} of ${key} was acknowledged but changed ${rowCount} rows`);
    }
    acked();
  } catch (error) {
    if (error?.retryable === true && NOT_APPLIED.has(error.code)) log.notApplied++;
    else {
      unknown();
      if (log.unknownErrors.length < 100) log.unknownErrors.push(`${kind} of ${key}: ${error?.code ?? ''} cause ${error?.cause?.code ?? ''} ${error?.message ?? String(error)}`);
    }
    if (log.errors.length < 200) log.errors.push(`${kind} of ${key}: ${error?.code ?? ''} ${error?.message ?? String(error)}`);
  }
}

async function clientLoop(client) {
  let nextItem = 1_000_000_000 + client * 1_000_000;
  while (running) {
    const dice = Math.random();
    const k = 1 + Math.floor(Math.random() * config.counters);
    if (dice < 0.45) {
      await call('transaction', k, () => router.transaction(k, async (db) => {
        const startedAt = Date.now();
        try {
          const read = await db.query('SELECT n FROM counters WHERE k = $1', [k]);
          if (read.rowCount !== 1) log.anomalies.push(`transaction read of counter ${k} found ${read.rowCount} rows`);
          // Time inside the transaction, so that stalls land between its statements.
          await sleep(Math.random() * 20);
          const updated = await db.query('UPDATE counters SET n = n + 1 WHERE k = $1', [k]);
          return updated.rowCount;
        } finally {
          // A stall (the test stops this process for over a second) happened inside this transaction.
          if (Date.now() - startedAt > 1_000) log.transactionsAcrossStall++;
        }
      }), () => count(log.incrementsAcked, k), () => count(log.incrementsUnknown, k));
    } else if (dice < 0.75) {
      await call('increment', k, async () => (await router.query(k, 'UPDATE counters SET n = n + 1 WHERE k = $1', [k])).rowCount,
        () => count(log.incrementsAcked, k), () => count(log.incrementsUnknown, k));
    } else {
      const id = nextItem++;
      await call('insert', id, async () => (await router.query(id, 'INSERT INTO items (id, worker) VALUES ($1, $2)', [id, client])).rowCount,
        () => log.insertedAcked.push(id), () => log.insertedUnknown.push(id));
    }
    await sleep(2);
  }
}

const loops = Array.from({ length: config.clients }, (_, client) => clientLoop(client));
process.on('message', (message) => {
  if (!message.stop) return;
  running = false;
  void Promise.all(loops).then(async () => {
    await router.close();
    process.send({ log }, () => process.exit(0));
  });
});
process.send({ ready: true });
