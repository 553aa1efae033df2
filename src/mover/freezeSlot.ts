import type pg from 'pg';
import { ROUTER_ACK_CHANNEL, routersBehind } from '../catalog/routers.js';
import { setSlotState } from '../catalog/slotMap.js';
import { log } from '../plumbing/log.js';
import { startWaitLog } from '../plumbing/waitLog.js';

const logger = log('mover');

/**
 * How long a freeze waits for live routers to acknowledge it. Only an
 * optimisation: a router that has seen the freeze holds new calls instead of
 * sending them to the source to be refused. Correctness does not depend on it
 * (the source's route check refuses stale work), so a stalled or dead router
 * costs a freeze at most this much.
 */
export const ROUTER_ACK_WAIT_MS_DEFAULT = 200;

export interface SlotFreeze {
  /** The catalog epoch of the freeze. */
  epoch: number;
  /** Live routers that had not acknowledged when the wait ended. */
  routersBehind: string[];
  /** Sequential round trips to the catalog. */
  roundTrips: number;
}

/**
 * Marks the slot frozen (epoch + 1, NOTIFY) and waits, at most `ackWaitMs`,
 * until every router with a live registration has acknowledged that epoch.
 */
export async function freezeSlotForRouters(catalog: pg.ClientBase, slot: number, ackWaitMs = ROUTER_ACK_WAIT_MS_DEFAULT): Promise<SlotFreeze> {
  let roundTrips = 0;
  if (ackWaitMs > 0 && !listening.has(catalog)) {
    roundTrips++;
    await catalog.query(`LISTEN ${ROUTER_ACK_CHANNEL}`);
    listening.add(catalog);
  }
  roundTrips++;
  const epoch = await setSlotState(catalog, slot, 'frozen');
  if (ackWaitMs <= 0) return { epoch, routersBehind: [], roundTrips };
  const deadline = performance.now() + ackWaitMs;
  const waitLog = startWaitLog(logger, `every live router to acknowledge epoch ${epoch} (slot ${slot} frozen)`, ackWaitMs, { slot, epoch });
  // Re-checked on each acknowledgement NOTIFY only (no polling: each check is a round trip of the freeze),
  // and once more when the wait ends.
  for (;;) {
    roundTrips++;
    const behind = await routersBehind(catalog, epoch).catch((error: unknown) => {
      waitLog.end('failed');
      throw error;
    });
    const leftMs = deadline - performance.now();
    if (behind.length === 0 || leftMs <= 0) {
      // Not an error: the nodes refuse stale work anyway; a router that did not answer costs this freeze at most its bound.
      waitLog.end(behind.length === 0 ? 'done' : 'went ahead without every router', behind.length === 0 ? {} : { routersBehind: behind.map((router) => router.name) });
      return { epoch, routersBehind: behind.map((router) => router.name), roundTrips };
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, leftMs);
      function done(): void {
        clearTimeout(timer);
        catalog.removeListener('notification', done);
        resolve();
      }
      catalog.on('notification', done);
    });
  }
}

/** Catalog sessions already listening for acknowledgements. */
const listening = new WeakSet<pg.ClientBase>();
