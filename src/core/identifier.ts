import { badInput } from './errors.js';

/**
 * Every identifier that reaches SQL goes through `quoteIdent`, so a name with
 * quotes, spaces or SQL in it is a name, never code.
 */
export function quoteIdent(name: string): string {
  if (name.length === 0) throw badInput('an empty identifier was given', 'name the object');
  if (name.includes('\u0000')) throw badInput('an identifier contains a NUL byte', 'remove it from the name');
  return `"${name.replaceAll('"', '""')}"`;
}

/** `schema.name` with both parts quoted. */
export function quoteQualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** A SQL string literal, for the few places where a parameter cannot be used (DDL). */
export function quoteLiteral(value: string): string {
  if (value.includes('\u0000')) throw badInput('a value contains a NUL byte', 'remove it');
  const quoted = value.replaceAll("'", "''");
  // With a backslash, the E'' form reads the same whatever standard_conforming_strings is (as PostgreSQL's quote_literal does).
  return value.includes('\\') ? `E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** PostgreSQL truncates identifiers to 63 bytes; longer names would collide silently. */
export const IDENTIFIER_BYTES_MAX = 63;

export function assertIdentifierFits(name: string, what: string): void {
  if (Buffer.byteLength(name, 'utf8') > IDENTIFIER_BYTES_MAX) {
    throw badInput(
      `${what} "${name}" is longer than ${IDENTIFIER_BYTES_MAX} bytes`,
      'choose a shorter name',
    );
  }
}
