/**
 * PostgreSQL's COPY text format, the little of it that routing rows needs:
 * a line is one row, fields are separated by a tab, `\N` is NULL, and a
 * backslash escapes (\b \f \n \r \t \v \\, \NNN octal, \xHH hex, any other
 * character stands for itself). Lines are passed on to the node unchanged;
 * only the shard key's fields are decoded, to compute the row's slot.
 */

/** The raw (still escaped) fields of one COPY text line, without its newline. */
export function copyTextFields(line: string): string[] {
  return line.split('\t');
}

/**
 * A decoded field: its text, or null for `\N`. Octal and hex escapes stand
 * for bytes (as in PostgreSQL), so the result is decoded as UTF-8 after them.
 */
export function decodeCopyTextField(raw: string): string | null {
  if (raw === '\\N') return null;
  if (!raw.includes('\\')) return raw;
  const bytes: number[] = [];
  const pushText = (text: string): void => { for (const byte of Buffer.from(text, 'utf8')) bytes.push(byte); };
  // By code point, not UTF-16 unit: a character outside the BMP (a surrogate pair) is one character, also after a backslash.
  const chars = Array.from(raw);
  const digitsAt = (from: number, digit: RegExp, most: number): string => {
    let digits = '';
    while (digits.length < most && from + digits.length < chars.length && digit.test(chars[from + digits.length]!)) digits += chars[from + digits.length]!;
    return digits;
  };
  for (let index = 0; index < chars.length; index++) {
    const char = chars[index]!;
    if (char !== '\\' || index === chars.length - 1) {
      pushText(char);
      continue;
    }
    const next = chars[++index]!;
    const simple = SIMPLE_ESCAPES[next];
    if (simple !== undefined) {
      pushText(simple);
    } else if (next >= '0' && next <= '7') {
      const octal = digitsAt(index, /^[0-7]$/, 3);
      bytes.push(parseInt(octal, 8) & 0xff);
      index += octal.length - 1;
    } else if (next === 'x' && /^[0-9a-fA-F]$/.test(chars[index + 1] ?? '')) {
      const hex = digitsAt(index + 1, /^[0-9a-fA-F]$/, 2);
      bytes.push(parseInt(hex, 16));
      index += hex.length;
    } else {
      pushText(next);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

/** Encodes a text value as one COPY text field (the inverse of `decodeCopyTextField`). */
export function encodeCopyTextField(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\b\f\n\r\t\v]/g, (char) => ENCODED[char]!);
}

const ENCODED: Readonly<Record<string, string>> = { '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v' };
