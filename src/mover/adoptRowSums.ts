import { trackOwnerLeaves, ownerLeavesRowSums, untrackOwnerLeaves, type AdoptedLeaves } from '../node/adoptOwnerRowSums.js';
import { sourceRowSums, trackSourceRows, untrackSourceRows } from '../node/adoptSourceRowSums.js';
import type { AdoptContext } from './adoptContext.js';

/**
 * The adoption's verification by row sums (issue 13): the cutover compares
 * sums kept as the rows change instead of scanning every row inside the
 * fence, as the online mover does (`node/slotRowSums.ts`).
 *
 * Before the cutover, with the final catch-up still to come, each source's
 * old table keeps one whole-table sum (`node/adoptSourceRowSums.ts`) and
 * every owner's leaves keep their per-leaf sums, each started with one scan
 * at one snapshot. Inside the fence only those sums are read, all sides at
 * once, and compared as totals:
 *
 *   rows:     Σ sources count(table)         = Σ owners Σ leaves count(leaf)
 *   checksum: Σ sources Σ hash(row)          = Σ owners Σ leaves Σ hash(row)
 *
 * Why totals prove what the scan's per-slot comparison proved: an owner's
 * leaves are the partitions of its staged parent, each holding only rows of
 * its own slot (the partition bound), and the slot map gives every slot to
 * exactly one owner; so the owners' leaves, taken together, are a disjoint
 * cover of the adopted table — no row is in two leaves, and a row can be in
 * no leaf but its slot's. A row's slot follows from its key, which is part of
 * the hashed row, so a row "missing from slot A and extra in slot B" is two
 * different rows with different hashes: per-slot differences cannot cancel
 * in the totals except by the same hash-sum coincidence that would fool a
 * per-slot checksum. Totals are therefore as strong as the per-slot check;
 * when they differ, the scan runs to name the slots (and any key on two
 * sources) for the error.
 *
 * Where the sums are not there for every side (a table whose rows hash by
 * their text form, a lock that did not come, a TRUNCATE, a trigger disabled
 * behind reshard's back), the verification falls back to the scan.
 */

function ownedSlots(context: AdoptContext, node: string): number[] {
  return context.owners.flatMap((owner, slot) => (owner === node ? [slot] : []));
}

function adoptedLeaves(context: AdoptContext): AdoptedLeaves {
  const { adoption } = context;
  return { schema: adoption.schema, name: adoption.name, stagedName: adoption.stagedName, keyColumn: adoption.keyColumn };
}

/**
 * Starts the sums on every source and every owner (scans, outside the
 * cutover). Idempotent. Returns, per source, whether its sums are kept (its
 * fence then reads them under its lock).
 */
export async function trackAdoptedRows(context: AdoptContext): Promise<boolean[]> {
  const [sources] = await Promise.all([trackSourcesRows(context), trackOwnersRows(context)]);
  return sources;
}

/** The sources' part of trackAdoptedRows (one scan of each source); per source, whether its sums are kept. */
export async function trackSourcesRows(context: AdoptContext): Promise<boolean[]> {
  const { adoption, limits } = context;
  return Promise.all(adoption.sources.map(async (_, index) => trackSourceRows(await context.source(index), adoption, limits.fenceLockTimeoutMs)));
}

/** The owners' part of trackAdoptedRows (one scan of every owner's leaves). */
export async function trackOwnersRows(context: AdoptContext): Promise<void> {
  const { limits } = context;
  await Promise.all(context.nodes.map(async (node) => trackOwnerLeaves(await context.node(node.name), adoptedLeaves(context), ownedSlots(context, node.name), context.modulus, limits.fenceLockTimeoutMs)));
}

/** What the sums say: equal (with the rows), differing, or not usable (the scan decides). */
export type AdoptedRowSumsOutcome =
  | { outcome: 'equal'; rows: number }
  | { outcome: 'differ'; detail: string }
  | { outcome: 'untracked'; detail: string };

/**
 * Reads every side's sums at once (the sources fenced, the owners synced)
 * and compares the totals. A source's sums read by its fence, under its lock,
 * are final (nothing writes the table after the fence): those are used
 * without asking the source again, so only the owners are read here.
 */
export async function compareAdoptedRowSums(context: AdoptContext): Promise<AdoptedRowSumsOutcome> {
  const { adoption } = context;
  const [onSources, onOwners] = await Promise.all([
    Promise.all(adoption.sources.map(async (_, index) => context.fences.get(index)?.sums ?? sourceRowSums(await context.source(index), adoption))),
    Promise.all(context.nodes.map(async (node) => ownerLeavesRowSums(await context.node(node.name), adoptedLeaves(context), ownedSlots(context, node.name), context.modulus))),
  ]);
  const untrackedSource = onSources.findIndex((sums) => !sums.tracked);
  if (untrackedSource >= 0) return { outcome: 'untracked', detail: `${context.sourceName(untrackedSource)} has no row sums` };
  const untrackedOwner = onOwners.findIndex((leaves) => leaves.some((leaf) => !leaf.tracked));
  if (untrackedOwner >= 0) return { outcome: 'untracked', detail: `node ${context.nodes[untrackedOwner]!.name} has a leaf without row sums` };
  const sourceRows = onSources.reduce((sum, sums) => sum + sums.rows, 0);
  const sourceChecksum = onSources.reduce((sum, sums) => sum + BigInt(sums.checksum), 0n);
  const ownerRows = onOwners.flat().reduce((sum, leaf) => sum + leaf.rows, 0);
  const ownerChecksum = onOwners.flat().reduce((sum, leaf) => sum + BigInt(leaf.checksum), 0n);
  if (sourceRows === ownerRows && sourceChecksum === ownerChecksum) return { outcome: 'equal', rows: ownerRows };
  return { outcome: 'differ', detail: `${sourceRows} rows on the sources, ${ownerRows} on the owners, checksums ${sourceChecksum === ownerChecksum ? 'equal' : 'differ'}` };
}

/**
 * Ends the sums everywhere: triggers and sums rows on every source (under
 * the table's name or, after the switch, its kept name) and every owner's
 * leaves. Idempotent; for cleanup and for every undo.
 */
export async function untrackAdoptedRows(context: AdoptContext): Promise<void> {
  const { adoption } = context;
  const names = [{ schema: adoption.schema, name: adoption.name }, { schema: adoption.schema, name: adoption.keptName }];
  await Promise.all([
    ...adoption.sources.map(async (_, index) => untrackSourceRows(await context.source(index), names)),
    ...context.nodes.map(async (node) => untrackOwnerLeaves(await context.node(node.name), adoptedLeaves(context), ownedSlots(context, node.name), context.modulus)),
  ]);
}
