import type pg from 'pg';
import { ROUTER_ACK_CHANNEL, routersBehind } from '../catalog/routers.js';
import { freezeSlotsInCatalog } from '../catalog/slotFreeze.js';
import { slotsText } from '../core/slotsText.js';
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
  const begun = await beginSlotFreeze(catalog, [slot], ackWaitMs);
  const acked = await begun.acknowledged;
  return { epoch: begun.epoch, routersBehind: acked.routersBehind, roundTrips: begun.roundTrips + acked.roundTrips };
}

/**
 * The freeze in two halves, so that the caller can fence the source while
 * the routers acknowledge: returns once the slots are frozen in the catalog
 * (all at one epoch), with the wait for the acknowledgements still running.
 * One round trip when every router acknowledges: the freeze's statement also
 * names the live routers, and each acknowledgement's NOTIFY names its router
 * (listened for before the freeze, so none is missed). A NOTIFY that names
 * none (a router of an older reshard) makes the wait ask the catalog again.
 */
export async function beginSlotFreeze(catalog: pg.ClientBase, slots: readonly number[], ackWaitMs = ROUTER_ACK_WAIT_MS_DEFAULT): Promise<{
  epoch: number; roundTrips: number; acknowledged: Promise<{ routersBehind: string[]; roundTrips: number }>;
  /** Ends the wait for acknowledgements now (`acknowledged` then names the routers still behind). */
  stopWaiting(): void;
}> {
  let stopped = false;
  let roundTrips = 0;
  if (ackWaitMs > 0 && !listening.has(catalog)) {
    roundTrips++;
    await listenForRouterAcks(catalog);
  }
  /** Acknowledgements heard so far: router id → epoch; `undefined` key when one named no router. */
  const acked = new Map<string | undefined, number>();
  let heard: (() => void) | undefined;
  const onNotification = (message: pg.Notification): void => {
    if (message.channel !== ROUTER_ACK_CHANNEL) return;
    const ack = parseAck(message.payload);
    acked.set(ack.router, Math.max(acked.get(ack.router) ?? 0, ack.epoch));
    heard?.();
  };
  if (ackWaitMs <= 0) {
    roundTrips++;
    const { epoch } = await freezeSlotsInCatalog(catalog, slots);
    return { epoch, roundTrips, acknowledged: Promise.resolve({ routersBehind: [], roundTrips: 0 }), stopWaiting: () => {} };
  }
  catalog.on('notification', onNotification);
  let frozen: Awaited<ReturnType<typeof freezeSlotsInCatalog>>;
  try {
    roundTrips++;
    frozen = await freezeSlotsInCatalog(catalog, slots);
  } catch (error) {
    catalog.removeListener('notification', onNotification);
    throw error;
  }
  const { epoch } = frozen;
  const waitForAcks = async (): Promise<{ routersBehind: string[]; roundTrips: number }> => {
    let asked = 0;
    let behind = frozen.liveRouters.filter((router) => router.ackedEpoch < epoch);
    const deadline = performance.now() + ackWaitMs;
    const waitLog = startWaitLog(logger, `every live router to acknowledge epoch ${epoch} (${slotsText(slots)} frozen)`, ackWaitMs, { slots, epoch });
    try {
      for (;;) {
        if (acked.has(undefined)) {
          // An acknowledgement without its router's name: the catalog says who is behind.
          acked.delete(undefined);
          asked++;
          behind = await routersBehind(catalog, epoch).catch((error: unknown) => {
            waitLog.end('failed');
            throw error;
          });
        }
        behind = behind.filter((router) => (acked.get(router.id) ?? 0) < epoch);
        const leftMs = deadline - performance.now();
        if (behind.length === 0 || leftMs <= 0 || stopped) {
          // Not an error: the nodes refuse stale work anyway; a router that did not answer costs this freeze at most its bound.
          // Stopped by the caller (the source is fenced): routine, not a router that failed to answer.
          waitLog.end(behind.length === 0 || stopped ? 'done' : 'went ahead without every router', behind.length === 0 ? {} : { routersBehind: behind.map((router) => router.name) });
          return { routersBehind: behind.map((router) => router.name), roundTrips: asked };
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, leftMs);
          function done(): void {
            clearTimeout(timer);
            heard = undefined;
            resolve();
          }
          heard = done;
        });
      }
    } finally {
      catalog.removeListener('notification', onNotification);
    }
  };
  return {
    epoch, roundTrips, acknowledged: waitForAcks(),
    stopWaiting: () => {
      stopped = true;
      heard?.();
    },
  };
}

/** An acknowledgement's payload: `{"router": id, "epoch": n}`; anything else names no router. */
function parseAck(payload: string | undefined): { router: string | undefined; epoch: number } {
  try {
    const parsed = JSON.parse(payload ?? '') as unknown;
    if (typeof parsed === 'object' && parsed !== null) {
      const { router, epoch } = parsed as { router?: unknown; epoch?: unknown };
      if (typeof router === 'string' && typeof epoch === 'number') return { router, epoch };
    }
  } catch {
    // An older router's bare epoch.
  }
  return { router: undefined, epoch: Number(payload) || 0 };
}

/**
 * Makes the catalog session hear routers' acknowledgements (once per
 * session): a freeze that calls this before its clock starts keeps the
 * LISTEN's round trip out of the write pause.
 */
export async function listenForRouterAcks(catalog: pg.ClientBase): Promise<void> {
  if (listening.has(catalog)) return;
  await catalog.query(`LISTEN ${ROUTER_ACK_CHANNEL}`);
  listening.add(catalog);
}

/** Catalog sessions already listening for acknowledgements. */
const listening = new WeakSet<pg.ClientBase>();
