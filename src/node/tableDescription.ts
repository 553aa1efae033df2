import { quoteIdent, quoteQualified } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/** One column as the catalogs describe it. */
export interface ColumnDescription {
  name: string;
  /** format_type(): `bigint`, `character varying(20)`, `numeric(12,2)` … */
  type: string;
  notNull: boolean;
  /** The column's collation when it is not the type's default, and whether it compares bytes (deterministic). */
  collation: string | undefined;
  collationDeterministic: boolean;
  /** The DEFAULT expression as pg_get_expr prints it, if any. */
  defaultExpression: string | undefined;
  identity: 'always' | 'by default' | undefined;
}

/** A primary key, unique constraint or unique index: which columns it covers. */
export interface UniqueDescription {
  /** The constraint's name, or the index's when no constraint owns it. */
  name: string;
  kind: 'primary key' | 'unique constraint' | 'unique index';
  /** Plain columns covered (an expression position is left out). */
  columns: string[];
  /** pg_get_constraintdef / pg_get_indexdef, to show and to replay. */
  definition: string;
}

export interface ForeignKeyDescription {
  name: string;
  /** The table that holds the constraint, `schema.name`. */
  fromTable: string;
  fromColumns: string[];
  /** The table it references, `schema.name`. */
  toTable: string;
  toColumns: string[];
}

/** A sequence that feeds a column (owned by it — serial, identity — or named in its DEFAULT). */
export interface SequenceFeed {
  column: string;
  /** `schema.name` of the sequence, quoted for SQL. */
  sequence: string;
  /** The sequence's own type: smallint, integer or bigint. */
  sequenceType: string;
  /** The last value handed out (undefined before the first nextval). */
  lastValue: bigint | undefined;
}

export interface TableDescription {
  schema: string;
  name: string;
  /** pg_class.relkind: 'r' ordinary, 'p' partitioned, 'v' view, 'f' foreign … */
  kind: string;
  columns: ColumnDescription[];
  uniques: UniqueDescription[];
  /** Foreign keys this table holds (out of it) and those of other tables that reference it (into it). */
  foreignKeysOut: ForeignKeyDescription[];
  foreignKeysIn: ForeignKeyDescription[];
  /** CHECK constraints, as pg_get_constraintdef prints them, by name. */
  checks: { name: string; definition: string }[];
  sequences: SequenceFeed[];
  /** pg_total_relation_size: heap, TOAST and indexes. */
  totalBytes: number;
  /** pg_class.reltuples: the planner's estimate (-1 or 0 before the first ANALYZE). */
  rowsEstimate: number;
}

const KIND_BY_CONSTRAINT: Record<string, UniqueDescription['kind']> = { p: 'primary key', u: 'unique constraint' };

/**
 * Everything the catalogs tell about one table that adoption needs:
 * columns, keys and unique indexes, foreign keys both ways, sequences and
 * size. Undefined when no relation of that name exists.
 */
export async function describeTable(db: Queryable, schema: string, name: string): Promise<TableDescription | undefined> {
  const relation = await db.query<{ oid: number; kind: string; total_bytes: string; rows_estimate: number }>(
    `SELECT c.oid::int AS oid, c.relkind::text AS kind, pg_total_relation_size(c.oid)::text AS total_bytes, c.reltuples::float8 AS rows_estimate
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name]);
  const found = relation.rows[0];
  if (!found) return undefined;
  const oid = found.oid;

  const columns = await db.query<{
    name: string; type: string; not_null: boolean; collation: string | null; deterministic: boolean | null; default_expression: string | null; identity: string;
  }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
            CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(co.collname) END AS collation,
            co.collisdeterministic AS deterministic,
            pg_get_expr(d.adbin, d.adrelid) AS default_expression, a.attidentity::text AS identity
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid]);

  // Unique indexes, with the constraint that owns each (primary key, unique) if any.
  const uniques = await db.query<{ name: string; constraint_type: string | null; columns: string[]; definition: string }>(
    `SELECT coalesce(con.conname, ic.relname) AS name, con.contype::text AS constraint_type,
            array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   ORDER BY k.position)::text[] AS columns,
            coalesce(pg_get_constraintdef(con.oid), pg_get_indexdef(i.indexrelid)) AS definition
       FROM pg_index i
       JOIN pg_class ic ON ic.oid = i.indexrelid
       LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u')
      WHERE i.indrelid = $1 AND i.indisunique
      ORDER BY i.indisprimary DESC, 1`,
    [oid]);

  const foreignKeys = await db.query<{ name: string; from_table: string; from_columns: string[]; to_table: string; to_columns: string[]; outgoing: boolean }>(
    `SELECT con.conname AS name,
            format('%s.%s', fn.nspname, fc.relname) AS from_table,
            array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, position)
                    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.position)::text[] AS from_columns,
            format('%s.%s', tn.nspname, tc.relname) AS to_table,
            array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, position)
                    JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.position)::text[] AS to_columns,
            con.conrelid = $1 AS outgoing
       FROM pg_constraint con
       JOIN pg_class fc ON fc.oid = con.conrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
       JOIN pg_class tc ON tc.oid = con.confrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
      WHERE con.contype = 'f' AND (con.conrelid = $1 OR con.confrelid = $1) AND con.conparentid = 0
      ORDER BY con.conname`,
    [oid]);

  const checks = await db.query<{ name: string; definition: string }>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = $1 AND contype = 'c' ORDER BY conname`, [oid]);

  // Sequences owned by a column (serial: 'a', identity: 'i') or named in a column's DEFAULT ('n' on pg_attrdef).
  const sequences = await db.query<{ column_name: string; sequence: string; sequence_type: string; last_value: string | null }>(
    `WITH feeds AS (
       SELECT d.refobjsubid AS attnum, d.objid AS seq
         FROM pg_depend d
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1
          AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
       UNION
       SELECT ad.adnum, d.refobjid
         FROM pg_attrdef ad
         JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
         JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
        WHERE ad.adrelid = $1
     )
     SELECT a.attname AS column_name, format('%I.%I', sn.nspname, sc.relname) AS sequence,
            format_type(sq.seqtypid, NULL) AS sequence_type, ps.last_value::text AS last_value
       FROM feeds f
       JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = f.attnum
       JOIN pg_class sc ON sc.oid = f.seq JOIN pg_namespace sn ON sn.oid = sc.relnamespace
       JOIN pg_sequence sq ON sq.seqrelid = f.seq
       LEFT JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = sc.relname
      ORDER BY a.attnum`,
    [oid]);

  return {
    schema,
    name,
    kind: found.kind,
    columns: columns.rows.map((row) => ({
      name: row.name,
      type: row.type,
      notNull: row.not_null,
      collation: row.collation ?? undefined,
      collationDeterministic: row.deterministic ?? true,
      defaultExpression: row.default_expression ?? undefined,
      identity: row.identity === 'a' ? 'always' : row.identity === 'd' ? 'by default' : undefined,
    })),
    uniques: uniques.rows.map((row) => ({
      name: row.name,
      kind: KIND_BY_CONSTRAINT[row.constraint_type ?? ''] ?? 'unique index',
      columns: row.columns,
      definition: row.definition,
    })),
    foreignKeysOut: foreignKeys.rows.filter((row) => row.outgoing).map(foreignKeyOf),
    foreignKeysIn: foreignKeys.rows.filter((row) => !row.outgoing).map(foreignKeyOf),
    checks: checks.rows,
    sequences: sequences.rows.map((row) => ({
      column: row.column_name,
      sequence: row.sequence,
      sequenceType: row.sequence_type,
      lastValue: row.last_value === null ? undefined : BigInt(row.last_value),
    })),
    totalBytes: Number(found.total_bytes),
    rowsEstimate: found.rows_estimate,
  };
}

function foreignKeyOf(row: { name: string; from_table: string; from_columns: string[]; to_table: string; to_columns: string[] }): ForeignKeyDescription {
  return { name: row.name, fromTable: row.from_table, fromColumns: row.from_columns, toTable: row.to_table, toColumns: row.to_columns };
}

/** The server's wal_level: logical replication (and so online adoption) needs `logical`. */
export async function readWalLevel(db: Queryable): Promise<string> {
  const result = await db.query<{ wal_level: string }>("SELECT current_setting('wal_level') AS wal_level");
  return result.rows[0]!.wal_level;
}

/** Whether a relation of this name exists (any kind): a name adoption would need on a node. */
export async function relationExists(db: Queryable, schema: string, name: string): Promise<boolean> {
  const result = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [quoteQualified(schema, name)]);
  return result.rows[0]?.present === true;
}

/**
 * The largest value of each named column (undefined when the table is
 * empty): what adoption checks of sequence-fed columns against the nodes'
 * sequence blocks. One aggregate per column, so an indexed column reads one
 * index end.
 */
export async function columnMaxima(db: Queryable, schema: string, name: string, columns: readonly string[]): Promise<Map<string, bigint | undefined>> {
  const maxima = new Map<string, bigint | undefined>();
  for (const column of columns) {
    const result = await db.query<{ max: string | null }>(`SELECT max(${quoteIdent(column)})::text AS max FROM ONLY ${quoteQualified(schema, name)}`);
    const max = result.rows[0]?.max;
    maxima.set(column, max === null || max === undefined ? undefined : BigInt(max));
  }
  return maxima;
}
