/**
 * The benchmark's clients, in their own process as an application would be:
 * a Router and a Workload, steered over IPC by bench/onlineBench.ts.
 *   parent → child: { hot: number[] } (slots to favour), { stop: true }
 *   child → parent: { ready: true }, { log: SerializedLog }
 */
import { Workload, wallClockMs, type WorkloadLog } from '../src/checker/workload.js';
import type { ConnectionSettings } from '../src/core/connection.js';
import { Router } from '../src/router/router.js';

interface WorkloadProcessConfig {
  catalog: ConnectionSettings;
  clients: number;
  counters: number;
  thinkMs: number;
  slots: number;
}

export interface SerializedLog {
  insertedAcked: number[];
  insertedUnknown: number[];
  deletedAcked: number[];
  deletedUnknown: number[];
  incrementsAcked: [number, number][];
  incrementsUnknown: [number, number][];
  anomalies: string[];
  errors: string[];
  samples: WorkloadLog['samples'];
}

export function deserializeLog(log: SerializedLog): WorkloadLog {
  return {
    insertedAcked: new Set(log.insertedAcked),
    insertedUnknown: new Set(log.insertedUnknown),
    deletedAcked: new Set(log.deletedAcked),
    deletedUnknown: new Set(log.deletedUnknown),
    incrementsAcked: new Map(log.incrementsAcked),
    incrementsUnknown: new Map(log.incrementsUnknown),
    anomalies: log.anomalies,
    errors: log.errors,
    samples: log.samples,
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env['RESHARD_WORKLOAD'] ?? '{}') as WorkloadProcessConfig;
  const router = await Router.connect({ catalog: config.catalog, name: 'bench clients', poolSizePerNode: config.clients });
  let hot: number[] = [];
  const workload = new Workload(router, { clients: config.clients, counters: config.counters, thinkMs: config.thinkMs, hotSlots: () => hot, hotProbability: 0.3, clock: wallClockMs }, config.slots);
  await workload.prepare();
  workload.start();
  process.on('message', (message: { hot?: number[]; stop?: boolean }) => {
    if (message.hot) hot = message.hot;
    if (message.stop) {
      void (async () => {
        const log = await workload.stop();
        await router.close();
        const serialized: SerializedLog = {
          insertedAcked: [...log.insertedAcked], insertedUnknown: [...log.insertedUnknown],
          deletedAcked: [...log.deletedAcked], deletedUnknown: [...log.deletedUnknown],
          incrementsAcked: [...log.incrementsAcked], incrementsUnknown: [...log.incrementsUnknown],
          anomalies: log.anomalies, errors: log.errors, samples: log.samples,
        };
        process.send!({ log: serialized }, () => process.exit(0));
      })();
    }
  });
  process.send!({ ready: true });
}

if (process.send) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
