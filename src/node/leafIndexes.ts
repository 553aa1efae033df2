import { quoteLiteral } from '../core/identifier.js';
import type { Queryable } from '../plumbing/queryable.js';

/**
 * A staged leaf's indexes built after its bulk copy instead of kept up row by
 * row during it (issue 16): one sort per index costs about half of what the
 * per-row inserts into a secondary index on random text cost (PostgreSQL 15,
 * 200k users rows with a primary key and an email index: COPY with both
 * 1.0 s; COPY without them 0.24 s, then primary key 0.08 s, email index 0.2 s).
 * The indexes are the parent's, as ATTACH needs them to attach instead of
 * build: constraint-backed ones (primary key, unique, exclusion) as the same
 * constraints, the others as the same index definition on the leaf.
 */

/** Drops every index of a standalone staged leaf (with the constraints they back), before its bulk copy. */
export async function dropStagedLeafIndexes(db: Queryable, leaf: string): Promise<void> {
  // A leaf that serves (attached) keeps its indexes whatever happens: this is for a staged leaf only.
  await db.query(`DO $drop$
DECLARE
  index_row record;
BEGIN
  IF (SELECT relispartition FROM pg_class WHERE oid = ${quoteLiteral(leaf)}::regclass) THEN
    RAISE EXCEPTION 'reshard: % is attached; only a staged leaf drops its indexes for a copy', ${quoteLiteral(leaf)};
  END IF;
  FOR index_row IN
    SELECT k.conname, i.indexrelid::regclass AS index_name
      FROM pg_index i LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
     WHERE i.indrelid = ${quoteLiteral(leaf)}::regclass
  LOOP
    IF index_row.conname IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', ${quoteLiteral(leaf)}, index_row.conname);
    ELSE
      EXECUTE format('DROP INDEX %s', index_row.index_name);
    END IF;
  END LOOP;
END
$drop$`);
}

interface ParentIndexRow {
  constraint_def: string | null;
  index_def: string;
  unique: boolean;
  head: string;
  tail: string;
}

/**
 * Builds on `leaf` (quoted, qualified; without indexes: see
 * `dropStagedLeafIndexes`) every index `parent` has, one statement each.
 * An index definition this cannot re-aim at the leaf is left to ATTACH,
 * which builds it (correct, only slower).
 */
export async function buildLeafIndexesLikeParent(db: Queryable, parent: string, leaf: string): Promise<void> {
  const result = await db.query<ParentIndexRow>(
    `SELECT pg_get_constraintdef(k.oid) AS constraint_def, pg_get_indexdef(i.indexrelid) AS index_def, i.indisunique AS unique,
            format('CREATE %sINDEX %s ON ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, quote_ident(x.relname)) AS head,
            format('%s.%s USING ', quote_ident(n.nspname), quote_ident(p.relname)) AS tail
       FROM pg_index i
       JOIN pg_class x ON x.oid = i.indexrelid
       JOIN pg_class p ON p.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = p.relnamespace
       LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
      WHERE i.indrelid = $1::regclass`,
    [parent],
  );
  const statements = result.rows.flatMap((row) => {
    if (row.constraint_def !== null) return [`ALTER TABLE ${leaf} ADD ${row.constraint_def}`];
    const rest = indexDefinitionAfterTable(row);
    return rest === undefined ? [] : [`CREATE ${row.unique ? 'UNIQUE ' : ''}INDEX ON ${leaf} USING ${rest}`];
  });
  for (const statement of statements) await db.query(statement);
}

/** "btree (email)" from "CREATE INDEX users_email ON ONLY public.users USING btree (email)": what follows the table. */
function indexDefinitionAfterTable(row: ParentIndexRow): string | undefined {
  if (!row.index_def.startsWith(row.head)) return undefined;
  let after = row.index_def.slice(row.head.length);
  if (after.startsWith('ONLY ')) after = after.slice('ONLY '.length);
  return after.startsWith(row.tail) ? after.slice(row.tail.length) : undefined;
}
