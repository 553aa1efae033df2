import { ReshardError } from '../core/errors.js';

/**
 * Per-slot admission for a router: calls on an active slot go in at once and
 * are counted; calls on a frozen slot wait (bounded) until the slot is active
 * again. In-flight calls are only counted: the node's route lock, not the
 * router, makes a freeze wait for them. No I/O: the router feeds it the slot map's states.
 */
export class SlotGate {
  private readonly frozen = new Set<number>();
  private readonly inFlight = new Map<number, number>();
  private readonly releaseWaiters = new Map<number, Set<() => void>>();

  isFrozen(slot: number): boolean {
    return this.frozen.has(slot);
  }

  /** Applies the frozen set of a slot map; releases calls held on slots that thawed. */
  setFrozen(slots: Iterable<number>): void {
    const next = new Set(slots);
    for (const slot of this.frozen) {
      if (!next.has(slot)) {
        this.frozen.delete(slot);
        const waiters = this.releaseWaiters.get(slot);
        this.releaseWaiters.delete(slot);
        for (const release of waiters ?? []) release();
      }
    }
    for (const slot of next) this.frozen.add(slot);
  }

  /** Counts the call in if the slot is not frozen (then true), without waiting. */
  tryEnter(slot: number): boolean {
    if (this.frozen.has(slot)) return false;
    this.inFlight.set(slot, (this.inFlight.get(slot) ?? 0) + 1);
    return true;
  }

  /** Waits while the slot is frozen (at most `holdTimeoutMs`), then counts the call in. */
  async enter(slot: number, holdTimeoutMs: number): Promise<void> {
    if (this.frozen.has(slot)) {
      await new Promise<void>((resolve, reject) => {
        const waiters = this.releaseWaiters.get(slot) ?? new Set<() => void>();
        this.releaseWaiters.set(slot, waiters);
        const release = (): void => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(release);
          reject(new ReshardError('timeout', `slot ${slot} stayed frozen for more than ${holdTimeoutMs} ms`, 'retry the call: the slot is moving and will be served by its new owner'));
        }, holdTimeoutMs);
        waiters.add(release);
      });
      // Frozen again before this call ran (a second move of the same slot): wait again.
      if (this.frozen.has(slot)) return this.enter(slot, holdTimeoutMs);
    }
    this.inFlight.set(slot, (this.inFlight.get(slot) ?? 0) + 1);
  }

  leave(slot: number): void {
    const count = (this.inFlight.get(slot) ?? 1) - 1;
    if (count <= 0) this.inFlight.delete(slot);
    else this.inFlight.set(slot, count);
  }

  inFlightCount(): number {
    let total = 0;
    for (const count of this.inFlight.values()) total += count;
    return total;
  }
}
