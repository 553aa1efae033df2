import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSlotMapChange, type SlotMapChange } from '../../src/catalog/slotMapChange.js';

describe('parseSlotMapChange', () => {
  it('reads the changes the catalog sends', () => {
    expect(parseSlotMapChange('{"epoch":7,"state":"frozen","slots":[3,4]}')).toEqual({ epoch: 7, state: 'frozen', slots: [3, 4] });
    expect(parseSlotMapChange('{"epoch":8,"state":"active","owner":"n4","slots":[3]}')).toEqual({ epoch: 8, state: 'active', owner: 'n4', slots: [3] });
  });

  it('takes anything else for a change it cannot apply (the router reads the map then)', () => {
    for (const payload of [undefined, '', '12', 'null', '[1]', '{', '{"epoch":0,"state":"frozen","slots":[1]}', '{"epoch":1.5,"state":"frozen","slots":[1]}',
      '{"epoch":3,"state":"moving","slots":[1]}', '{"epoch":3,"state":"frozen","slots":[-1]}', '{"epoch":3,"state":"frozen","slots":"1"}',
      '{"epoch":3,"state":"frozen"}', '{"epoch":3,"state":"active","owner":"","slots":[1]}', '{"epoch":3,"state":"active","owner":7,"slots":[1]}']) {
      expect(parseSlotMapChange(payload), String(payload)).toBeUndefined();
    }
  });

  it('reads back every change it could be sent', () => {
    const change = fc.record({
      epoch: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      state: fc.constantFrom<SlotMapChange['state']>('frozen', 'active'),
      slots: fc.array(fc.nat({ max: 1 << 20 }), { maxLength: 500 }),
      owner: fc.option(fc.string({ minLength: 1 }), { nil: undefined }),
    }).map(({ owner, ...rest }): SlotMapChange => ({ ...rest, ...(owner !== undefined ? { owner } : {}) }));
    fc.assert(fc.property(change, (sent) => {
      expect(parseSlotMapChange(JSON.stringify(sent))).toEqual(sent);
    }));
  });
});
