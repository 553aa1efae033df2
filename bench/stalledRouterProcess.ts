/**
 * A second application process for bench/onlineBench.ts (BENCH_STALLED_ROUTER=1):
 * a Router that reads one key of every slot, so that its pooled connections
 * hold the node lease on every node, says it is ready, and is then stopped
 * (SIGSTOP) by the benchmark for the whole rebalance — a process that stalls
 * with its leases held. Reads only: the benchmark's verification of the
 * writers' log is untouched.
 *   child → parent: { ready: true }
 */
import type { ConnectionSettings } from '../src/core/connection.js';
import { slotOf } from '../src/core/hash.js';
import { Router } from '../src/router/router.js';

async function main(): Promise<void> {
  const config = JSON.parse(process.env['RESHARD_STALLED_ROUTER'] ?? '{}') as { catalog: ConnectionSettings; slots: number };
  const router = await Router.connect({ catalog: config.catalog, name: 'bench stalled router', poolSizePerNode: 2 });
  const keyOfSlot = new Map<number, number>();
  for (let id = 1; keyOfSlot.size < config.slots; id++) {
    const slot = slotOf('bigint', id, config.slots);
    if (!keyOfSlot.has(slot)) keyOfSlot.set(slot, id);
  }
  for (let round = 0; round < 2; round++) {
    await Promise.all([...keyOfSlot.values()].map((id) => router.query(id, 'SELECT count(*) FROM users WHERE id = $1', [id])));
  }
  process.send?.({ ready: true });
}

main().catch((error: unknown) => {
  process.stderr.write(`stalled router: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
