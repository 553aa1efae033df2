import type pg from 'pg';
import { routersBehind } from '../catalog/routers.js';
import { setSlotState } from '../catalog/slotMap.js';
import { waitFor } from '../coordinator/waitFor.js';

/** How long a freeze waits for live routers to acknowledge it; a router whose lease lapses stops serving by itself. */
export const ROUTER_ACK_TIMEOUT_MS = 15_000;

/**
 * Marks the slot frozen (epoch + 1, NOTIFY) and waits until every router with
 * a live lease has acknowledged that epoch, i.e. holds new work for the slot
 * and has drained its in-flight work on it. Returns the freeze epoch.
 */
export async function freezeSlotForRouters(catalog: pg.ClientBase, slot: number, timeoutMs = ROUTER_ACK_TIMEOUT_MS): Promise<number> {
  const epoch = await setSlotState(catalog, slot, 'frozen');
  await waitFor(`acknowledgement of epoch ${epoch} (slot ${slot} frozen) by every live router`, async () => {
    const behind = await routersBehind(catalog, epoch);
    return behind.length === 0 ? true : undefined;
  }, { timeoutMs, pollMs: 2, fix: 'check the applications\' routers: a router that cannot reach the catalog stops serving when its lease lapses' });
  return epoch;
}
