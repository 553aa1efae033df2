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
  for (let index = 0; index < raw.length; index++) {
    const char = raw[index]!;
    if (char !== '\\' || index === raw.length - 1) {
      pushText(char);
      continue;
    }
    const next = raw[++index]!;
    const simple = SIMPLE_ESCAPES[next];
    if (simple !== undefined) {
      pushText(simple);
    } else if (next >= '0' && next <= '7') {
      const octal = /^[0-7]{1,3}/.exec(raw.slice(index))![0];
      bytes.push(parseInt(octal, 8) & 0xff);
      index += octal.length - 1;
    } else if (next === 'x' && /^[0-9a-fA-F]/.test(raw[index + 1] ?? '')) {
      const hex = /^[0-9a-fA-F]{1,2}/.exec(raw.slice(index + 1))![0];
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
