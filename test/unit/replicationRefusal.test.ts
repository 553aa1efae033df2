import { describe, expect, it } from 'vitest';
import { refusalOf } from '../../src/node/replicationAccess.js';

describe('a replication connection\'s refusal, sorted by what fixes it', () => {
  it('reads the SQLSTATE, keeps the first line and never a password', () => {
    expect(refusalOf(Object.assign(new Error('permission denied to start WAL sender\nDETAIL: Only roles with the REPLICATION attribute may start a WAL sender process.'), { code: '42501' })))
      .toEqual({ kind: 'privilege', reason: 'permission denied to start WAL sender' });
    expect(refusalOf(Object.assign(new Error('number of requested standby connections exceeds max_wal_senders (currently 0)'), { code: '53300' })).kind).toBe('capacity');
    expect(refusalOf(Object.assign(new Error('all replication slots are in use'), { code: '53400' })).kind).toBe('capacity');
    expect(refusalOf(new Error('could not connect: host=h password=s3cret'))).toEqual({ kind: 'other', reason: 'could not connect: host=h password=…' });
  });
});
