import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { copyTextFields, decodeCopyTextField, encodeCopyTextField } from '../../src/core/copyText.js';

describe('COPY text fields', () => {
  it('decodes what it encodes, for any text and NULL', () => {
    fc.assert(fc.property(fc.option(fc.string({ unit: 'grapheme' }), { nil: null }), (value) => {
      expect(decodeCopyTextField(encodeCopyTextField(value))).toBe(value);
    }));
  });

  it('an encoded field never holds a tab or a newline, so a line splits into its fields', () => {
    fc.assert(fc.property(fc.array(fc.option(fc.string(), { nil: null }), { minLength: 1, maxLength: 6 }), (values) => {
      const line = values.map(encodeCopyTextField).join('\t');
      expect(line).not.toMatch(/[\n\r]/);
      expect(copyTextFields(line).map(decodeCopyTextField)).toEqual(values);
    }));
  });

  it('reads the escapes PostgreSQL writes and accepts', () => {
    expect(decodeCopyTextField('a\\tb')).toBe('a\tb');
    expect(decodeCopyTextField('\\101\\x42')).toBe('AB');
    expect(decodeCopyTextField('\\303\\251')).toBe('é');
    expect(decodeCopyTextField('\\q')).toBe('q');
    expect(decodeCopyTextField('\\N')).toBeNull();
    expect(decodeCopyTextField('\\\\N')).toBe('\\N');
    // A character outside the BMP is one character (a surrogate pair), also after a backslash or beside an escape.
    expect(decodeCopyTextField('\\\u{10000}')).toBe('\u{10000}');
    expect(decodeCopyTextField('a\\tb\u{1F600}')).toBe('a\tb\u{1F600}');
  });
});
