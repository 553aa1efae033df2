/**
 * The benchmark's delaying proxies, one per server, in their own process: the
 * bytes they relay (every copy among them) cost CPU that must neither slow
 * the coordinator's event loop nor hide inside its share.
 *   parent → child (env RESHARD_PROXIES): { targetPorts: number[], roundTripMs: number }
 *   child → parent: { ports: number[] } (in the order of targetPorts); exits on disconnect
 */
import { DelayingProxy } from './delayingProxy.js';

interface ProxiesConfig {
  targetPorts: number[];
  roundTripMs: number;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env['RESHARD_PROXIES'] ?? '{}') as ProxiesConfig;
  const proxies = await Promise.all(config.targetPorts.map((port) => DelayingProxy.start(port, config.roundTripMs)));
  process.on('disconnect', () => {
    void Promise.allSettled(proxies.map((proxy) => proxy.close())).then(() => process.exit(0));
  });
  process.send!({ ports: proxies.map((proxy) => proxy.port) });
}

if (process.send) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
