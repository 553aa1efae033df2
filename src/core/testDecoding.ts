/**
 * Reads the lines PostgreSQL's `test_decoding` output plugin writes for a
 * logical replication slot (`table public.users: UPDATE: id[bigint]:7 name[text]:'a''b'`)
 * far enough to tell which rows of one table changed: the shard key value of
 * every changed row, before and after (an UPDATE that changes the key names
 * both, as `old-key:` and `new-tuple:`). Reshard re-reads changed rows from
 * the source by key, so it needs no other column's value.
 */

export type DecodedChangeKind = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';

export interface DecodedChange {
  kind: DecodedChangeKind;
  /** The shard key values (text form) of the rows the change touched; empty for TRUNCATE. */
  keys: string[];
}

/**
 * Every way test_decoding may write `table <qualified>: ` for this table
 * (quote_qualified_identifier): a plain lower-case name is written bare
 * unless it is a keyword, so both spellings are accepted — a change missed
 * for a table named `order` would be a write lost.
 */
export function decodedTablePrefix(schema: string, name: string): string[] {
  const spellings = (part: string): string[] => {
    const quoted = `"${part.replaceAll('"', '""')}"`;
    return /^[a-z_][a-z0-9_$]*$/.test(part) ? [part, quoted] : [quoted];
  };
  return spellings(schema).flatMap((schemaSpelling) => spellings(name).map((nameSpelling) => `table ${schemaSpelling}.${nameSpelling}: `));
}

/**
 * The change a line describes, if it is a change of the table `prefixes`
 * name (else undefined: BEGIN, COMMIT, other tables). Throws on a line of
 * that table it cannot read (a change without the key: replica identity NOTHING).
 */
export function decodeChangeLine(line: string, prefixes: readonly string[], keyColumn: string): DecodedChange | undefined {
  const prefix = prefixes.find((candidate) => line.startsWith(candidate));
  if (prefix === undefined) return undefined;
  const rest = line.slice(prefix.length);
  const colon = rest.indexOf(': ');
  const kind = (colon < 0 ? rest.replace(/:$/, '') : rest.slice(0, colon)) as DecodedChangeKind;
  if (kind === 'TRUNCATE') return { kind, keys: [] };
  if (kind !== 'INSERT' && kind !== 'UPDATE' && kind !== 'DELETE') throw new Error(`unreadable change line: ${line.slice(0, 200)}`);
  const columns = readColumns(rest.slice(colon + 2));
  const keys = columns.filter((column) => column.name === keyColumn && column.value !== null).map((column) => column.value!);
  if (keys.length === 0) throw new Error(`the change carries no value of the key column ${keyColumn}: ${line.slice(0, 200)}`);
  return { kind, keys: [...new Set(keys)] };
}

interface DecodedColumn { name: string; value: string | null }

/** Columns of one or two tuples (`old-key:` / `new-tuple:` markers are skipped), values unquoted. */
function readColumns(text: string): DecodedColumn[] {
  const columns: DecodedColumn[] = [];
  let at = 0;
  while (at < text.length) {
    while (text[at] === ' ') at++;
    if (at >= text.length) break;
    for (const marker of ['old-key: ', 'new-tuple: ']) {
      if (text.startsWith(marker, at)) at += marker.length;
    }
    if (text.startsWith('(no-tuple-data)', at)) throw new Error('the change has no tuple data (replica identity NOTHING?)');
    // name: a quoted identifier or plain characters up to '['
    let name: string;
    if (text[at] === '"') {
      let end = at + 1;
      for (;;) {
        const quote = text.indexOf('"', end);
        if (quote < 0) throw new Error(`unterminated column name in ${text.slice(0, 200)}`);
        if (text[quote + 1] === '"') { end = quote + 2; continue; }
        end = quote + 1;
        break;
      }
      name = text.slice(at + 1, end - 1).replaceAll('""', '"');
      at = end;
    } else {
      const bracket = text.indexOf('[', at);
      if (bracket < 0) throw new Error(`unreadable column in ${text.slice(0, 200)}`);
      name = text.slice(at, bracket);
      at = bracket;
    }
    // [type]: the first "]:" after the '[' ends it (an array type is "integer[]").
    const typeEnd = text.indexOf(']:', at);
    if (text[at] !== '[' || typeEnd < 0) throw new Error(`unreadable column type in ${text.slice(0, 200)}`);
    at = typeEnd + 2;
    let value: string | null;
    if (text[at] === "'") {
      let end = at + 1;
      let out = '';
      for (;;) {
        const quote = text.indexOf("'", end);
        if (quote < 0) throw new Error(`unterminated value in ${text.slice(0, 200)}`);
        out += text.slice(end, quote);
        if (text[quote + 1] === "'") { out += "'"; end = quote + 2; continue; }
        end = quote + 1;
        break;
      }
      value = out;
      at = end;
    } else {
      const space = text.indexOf(' ', at);
      const end = space < 0 ? text.length : space;
      const raw = text.slice(at, end);
      value = raw === 'null' || raw === 'unchanged-toast-datum' ? null : raw;
      at = end;
    }
    columns.push({ name, value });
  }
  return columns;
}
