import { describe, expect, it } from 'vitest';
import { ReshardError } from '../../src/core/errors.js';
import { SlotGate } from '../../src/router/slotGate.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SlotGate', () => {
  it('lets calls on an active slot in at once and counts them until they leave', async () => {
    const gate = new SlotGate();
    await gate.enter(3, 10);
    await gate.enter(3, 10);
    await gate.enter(4, 10);
    expect(gate.inFlightCount()).toBe(3);
    gate.leave(3);
    gate.leave(4);
    expect(gate.inFlightCount()).toBe(1);
    gate.leave(3);
    gate.leave(3);
    expect(gate.inFlightCount()).toBe(0);
  });

  it('holds a call on a frozen slot until the slot thaws, and only that slot', async () => {
    const gate = new SlotGate();
    gate.setFrozen([5]);
    expect(gate.isFrozen(5)).toBe(true);
    let entered = false;
    const held = gate.enter(5, 5_000).then(() => { entered = true; });
    await gate.enter(6, 10);
    await tick();
    expect(entered).toBe(false);
    expect(gate.inFlightCount()).toBe(1);
    gate.setFrozen([]);
    await held;
    expect(entered).toBe(true);
    expect(gate.isFrozen(5)).toBe(false);
    expect(gate.inFlightCount()).toBe(2);
  });

  it('fails a held call with a timeout once the slot stays frozen past the bound', async () => {
    const gate = new SlotGate();
    gate.setFrozen([7]);
    const started = performance.now();
    const failure = await gate.enter(7, 30).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ReshardError);
    expect((failure as ReshardError).code).toBe('timeout');
    expect((failure as ReshardError).message).toContain('slot 7');
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(gate.inFlightCount()).toBe(0);
  });

  it('a call released by a thaw waits again when the slot is frozen again before it runs', async () => {
    const gate = new SlotGate();
    gate.setFrozen([8]);
    let entered = false;
    const held = gate.enter(8, 5_000).then(() => { entered = true; });
    // Thawed and frozen again in one go: the released call sees the slot frozen and waits again.
    gate.setFrozen([]);
    gate.setFrozen([8]);
    await tick();
    expect(entered).toBe(false);
    gate.setFrozen([]);
    await held;
    expect(entered).toBe(true);
  });

  it('keeps a slot that stays frozen across updates frozen, and its held calls held', async () => {
    const gate = new SlotGate();
    gate.setFrozen([1, 2]);
    let entered = false;
    const held = gate.enter(1, 5_000).then(() => { entered = true; });
    gate.setFrozen([1]);
    await tick();
    expect(entered).toBe(false);
    expect(gate.isFrozen(2)).toBe(false);
    gate.setFrozen([]);
    await held;
    expect(entered).toBe(true);
  });
});
