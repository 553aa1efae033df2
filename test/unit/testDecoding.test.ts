import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeChangeLine, decodedTablePrefix } from '../../src/core/testDecoding.js';

const prefix = decodedTablePrefix('public', 'users');

describe('decodeChangeLine: the shard key of each change test_decoding prints', () => {
  it('reads inserts, updates, deletes and truncates of the table, and nothing else', () => {
    expect(decodeChangeLine("table public.users: INSERT: id[bigint]:7 name[text]:'a b' tags[text[]]:'{x,y}' n[integer]:null", prefix, 'id'))
      .toEqual({ kind: 'INSERT', keys: ['7'] });
    expect(decodeChangeLine("table public.users: UPDATE: id[bigint]:7 name[text]:'it''s'", prefix, 'id')).toEqual({ kind: 'UPDATE', keys: ['7'] });
    expect(decodeChangeLine("table public.users: UPDATE: old-key: id[bigint]:7 new-tuple: id[bigint]:8 name[text]:'x'", prefix, 'id'))
      .toEqual({ kind: 'UPDATE', keys: ['7', '8'] });
    expect(decodeChangeLine('table public.users: DELETE: id[bigint]:-3', prefix, 'id')).toEqual({ kind: 'DELETE', keys: ['-3'] });
    expect(decodeChangeLine('table public.users: TRUNCATE: (no-flags)', prefix, 'id')).toEqual({ kind: 'TRUNCATE', keys: [] });
    expect(decodeChangeLine('table public.users_s0001: INSERT: id[bigint]:7', prefix, 'id')).toBeUndefined();
    expect(decodeChangeLine('table public.users2: INSERT: id[bigint]:7', prefix, 'id')).toBeUndefined();
    expect(decodeChangeLine('BEGIN', prefix, 'id')).toBeUndefined();
    expect(decodeChangeLine("table public.users: UPDATE: id[bigint]:7 doc[text]:unchanged-toast-datum", prefix, 'id')).toEqual({ kind: 'UPDATE', keys: ['7'] });
  });

  it('reads quoted names and a text key with quotes and spaces', () => {
    const quoted = decodedTablePrefix('My Schema', 'Users');
    expect(quoted).toEqual(['table "My Schema"."Users": ']);
    expect(decodedTablePrefix('public', 'order')).toContain('table public."order": ');
    expect(decodeChangeLine('table public."order": INSERT: "user"[bigint]:4', decodedTablePrefix('public', 'order'), 'user')).toEqual({ kind: 'INSERT', keys: ['4'] });
    expect(decodeChangeLine(`${quoted}INSERT: "User Id"[text]:'o''neil x' id[bigint]:1`, quoted, 'User Id')).toEqual({ kind: 'INSERT', keys: ["o'neil x"] });
  });

  it('refuses a change that carries no key', () => {
    expect(() => decodeChangeLine('table public.users: DELETE: (no-tuple-data)', prefix, 'id')).toThrow(/no tuple data/);
    expect(() => decodeChangeLine('table public.users: INSERT: id[bigint]:null', prefix, 'id')).toThrow(/no value of the key/);
  });

  it('gives back any text key as test_decoding quotes it, among other columns', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (key, other) => {
      fc.pre(!key.includes('\u0000') && !other.includes('\u0000'));
      const quote = (value: string): string => `'${value.replaceAll("'", "''")}'`;
      const line = `table public.users: INSERT: note[text]:${quote(other)} id[text]:${quote(key)} n[integer]:5`;
      expect(decodeChangeLine(line, prefix, 'id')).toEqual({ kind: 'INSERT', keys: [key] });
    }));
  });
});
