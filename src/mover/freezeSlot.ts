import type pg from 'pg';
import { ROUTER_ACK_CHANNEL, routersBehind } from '../catalog/routers.js';
import { ReshardError } from '../core/errors.js';
import { setSlotState } from '../catalog/slotMap.js';
import { errorFields, log } from '../core/log.js';
import { startWaitLog } from '../core/waitLog.js';

const logger = log('mover');

/** How long a freeze waits for live routers to acknowledge it; a router whose lease lapses stops serving by itself. */
export const ROUTER_ACK_TIMEOUT_MS = 15_000;

/**
 * Marks the slot frozen (epoch + 1, NOTIFY) and waits until every router with
 * a live lease has acknowledged that epoch, i.e. holds new work for the slot
 * and has drained its in-flight work on it. Returns the freeze epoch.
 */
export async function freezeSlotForRouters(catalog: pg.ClientBase, slot: number, timeoutMs = ROUTER_ACK_TIMEOUT_MS): Promise<number> {
  if (!listening.has(catalog)) {
    await catalog.query(`LISTEN ${ROUTER_ACK_CHANNEL}`);
    listening.add(catalog);
  }
  const epoch = await setSlotState(catalog, slot, 'frozen');
  const deadline = performance.now() + timeoutMs;
  const waitLog = startWaitLog(logger, `every live router to acknowledge epoch ${epoch} (slot ${slot} frozen)`, timeoutMs, { slot, epoch });
  try {
    // Re-check on every acknowledgement NOTIFY, and every 25 ms in case one is missed.
    for (;;) {
      const behind = await routersBehind(catalog, epoch);
      if (behind.length === 0) break;
      if (performance.now() >= deadline) {
        throw new ReshardError('timeout', `acknowledgement of epoch ${epoch} (slot ${slot} frozen) by every live router did not happen within ${timeoutMs} ms`,
          `check the applications' routers (${behind.map((router) => router.name).join(', ')} did not answer): a router that cannot reach the catalog stops serving when its lease lapses`);
      }
      await nextAcknowledgementOrTick(catalog);
    }
  } catch (error) {
    waitLog.end(error instanceof ReshardError && error.code === 'timeout' ? 'timeout' : 'failed', errorFields(error));
    throw error;
  }
  waitLog.end('done');
  return epoch;
}

function nextAcknowledgementOrTick(catalog: pg.ClientBase): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, 25);
    function done(): void {
      clearTimeout(timer);
      catalog.removeListener('notification', done);
      resolve();
    }
    catalog.on('notification', done);
  });
}

/** Catalog sessions already listening for acknowledgements. */
const listening = new WeakSet<pg.ClientBase>();
