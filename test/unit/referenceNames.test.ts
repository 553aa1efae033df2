import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isReferenceReplicationName, REFERENCE_PUBLICATION, referenceSubscriptionName } from '../../src/node/referenceTable.js';
import { migrationIdOfReplicationName } from '../../src/node/replication.js';

const nodeName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/);

describe('reference replication names', () => {
  it('are valid slot names, fit the identifier limit, are owned by reference tables and never read as a migration\'s', () => {
    fc.assert(fc.property(nodeName, nodeName, (holder, subscriber) => {
      const name = referenceSubscriptionName(holder, subscriber);
      expect(name.length).toBeLessThanOrEqual(63);
      expect(name).toMatch(/^[a-z0-9_]+$/);
      expect(isReferenceReplicationName(name)).toBe(true);
      expect(migrationIdOfReplicationName(name)).toBeUndefined();
    }));
  });

  it('differ for two subscribers of one holder (their slots share the holder\'s server)', () => {
    fc.assert(fc.property(nodeName, nodeName, nodeName, (holder, first, second) => {
      fc.pre(first !== second);
      expect(referenceSubscriptionName(holder, first)).not.toBe(referenceSubscriptionName(holder, second));
    }));
  });

  it('leave a migration\'s names to the migration', () => {
    expect(isReferenceReplicationName(REFERENCE_PUBLICATION)).toBe(true);
    expect(isReferenceReplicationName('reshard_m12_s3')).toBe(false);
    expect(referenceSubscriptionName('n1', 'n4')).toBe('reshard_ref_n1_n4');
  });
});
