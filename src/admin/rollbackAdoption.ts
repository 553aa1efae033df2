import { adoptionMigrationId, adoptionSourceRule, finishAdoptionMigration, setAdoptionState, unregisterAdoptedTable } from '../catalog/adoptions.js';
import { ReshardError } from '../core/errors.js';
import { connectCatalog, type ClusterAccess } from '../plumbing/clusterAccess.js';
import { dropSourceFenceFunction, rowsByKey, sourcePositionsByRule, tableExists, unfenceSourceTable, writeBackRows } from '../node/adoptSource.js';
import { changedKeys, dropAdoptedTable, fenceAdoptedTable, isPartitionedTable as isAdoptedParent, relationExists, renameTable } from '../node/adoptTarget.js';
import type { AdoptContext } from '../mover/adoptContext.js';
import { ADOPT_JOURNAL_UNIT, ADOPT_UNDOABLE_STEPS } from '../mover/adoptSteps.js';
import { catalogStepJournal } from '../mover/stepJournal.js';
import { StepRunner } from '../mover/stepRunner.js';
import { withAdoptContext } from './adoptSession.js';
import { dropSourceRowSums } from '../node/adoptSourceRowSums.js';

export interface AdoptionRollbackResult {
  migrationId: number;
  table: string;
  /** 'undone': it had not switched; 'returned': it had, and writes since went back to the old table. */
  outcome: 'undone' | 'returned';
  /** Keys written after the switch that were carried back. */
  keysReturned: number;
  /** Of those, keys no old table held (first written after the switch), and where they went. */
  newKeys: number;
  newKeysTo: 'the first source' | 'the source rule';
}

/** Where source `index` keeps the old table: a node source renamed it at the cutover, any other kept its name. */
export function oldTableOf(context: Pick<AdoptContext, 'adoption'>, index: number): { schema: string; name: string } {
  const { adoption } = context;
  return { schema: adoption.schema, name: adoption.sources[index]!.node !== undefined ? adoption.keptName : adoption.name };
}

/** The adoption `reshard rollback` would take back: the latest migration, if it is an adoption not yet forgotten. */
export async function adoptionToRollBack(access: ClusterAccess, migrationId?: number): Promise<number | undefined> {
  const catalog = await connectCatalog(access, 'reshard rollback');
  try {
    return await adoptionMigrationId(catalog, migrationId);
  } finally {
    await catalog.end().catch(() => {});
  }
}

/**
 * Takes an adoption back. Before its switch: its steps undone in reverse
 * (the journal's one undo path). After it, until `forget-source`: the
 * sharded table fenced on every node (routers hold calls for it), every key
 * written on a node since the switch (the nodes' key logs) carried back to
 * the old table by key, the old table unfenced under its own name, the
 * sharded table dropped and unregistered — no write lost either way.
 * Idempotent: a rollback interrupted anywhere is run again.
 */
export async function rollbackAdoption(access: ClusterAccess, migrationId: number): Promise<AdoptionRollbackResult> {
  return withAdoptContext(access, migrationId, new Map(), {}, async (context, catalog) => {
    const { adoption } = context;
    if (adoption.state === 'forgotten') {
      throw new ReshardError('precondition', `the old table of ${adoption.name} was dropped by \`table forget-source\``, 'an adoption can be rolled back only before forget-source');
    }
    if (adoption.state === 'rolled_back') return { migrationId, table: adoption.name, outcome: 'undone', keysReturned: 0, newKeys: 0, newKeysTo: 'the first source' };
    if (adoption.state === 'streaming' || adoption.state === 'cutover') {
      const runner = await StepRunner.open(catalogStepJournal(catalog, migrationId), [ADOPT_JOURNAL_UNIT], context.emit);
      await runner.undo(ADOPT_UNDOABLE_STEPS, context, [ADOPT_JOURNAL_UNIT], { reason: 'reshard rollback' });
      await setAdoptionState(catalog, migrationId, 'rolled_back');
      await finishAdoptionMigration(catalog, migrationId, 'rolled_back', 'rolled back by reshard rollback');
      return { migrationId, table: adoption.name, outcome: 'undone', keysReturned: 0, newKeys: 0, newKeysTo: 'the first source' };
    }
    // Switched (or a return under way): routers hold the table's calls while it goes back.
    await setAdoptionState(catalog, migrationId, 'returning');
    const table = { schema: adoption.schema, name: adoption.name, keyColumn: adoption.keyColumn, keyType: adoption.keyType };
    const keys = new Set<string>();
    for (const node of context.nodes) {
      const session = await context.node(node.name);
      if (!(await isAdoptedParent(session, adoption.schema, adoption.name))) continue;
      await fenceAdoptedTable(session, adoption, context.limits.fenceLockTimeoutMs);
      for (const key of await changedKeys(session, migrationId)) keys.add(key);
    }
    const all = [...keys];
    const rows = new Map<string, unknown[]>();
    for (const node of context.nodes) {
      const session = await context.node(node.name);
      if (!(await isAdoptedParent(session, adoption.schema, adoption.name))) continue;
      for (const [key, keyRows] of await rowsByKey(session, table, all)) rows.set(key, [...(rows.get(key) ?? []), ...keyRows]);
    }
    // Each key back to the source whose old table holds it; a key new since the switch to the source the
    // adoption's rule (--source-of) names, else (no rule, or a position it does not give) to the first source.
    const holderOf = new Map<string, number>();
    for (const [index] of adoption.sources.entries()) {
      const old = oldTableOf(context, index);
      const session = await context.source(index);
      if (!(await tableExists(session, old))) continue;
      for (const key of (await rowsByKey(session, { ...table, name: old.name }, all)).keys()) if (!holderOf.has(key)) holderOf.set(key, index);
    }
    const newKeys = all.filter((key) => !holderOf.has(key));
    const rule = adoption.sources.length > 1 ? await adoptionSourceRule(catalog, migrationId) : undefined;
    if (rule !== undefined && newKeys.length > 0) {
      const positions = await sourcePositionsByRule(await context.source(0), adoption.keyColumn, adoption.keyType, rule, newKeys);
      for (const key of newKeys) {
        const position = positions.get(key);
        if (position !== null && position !== undefined && position >= 0 && position < adoption.sources.length) holderOf.set(key, position);
      }
    }
    for (const [index] of adoption.sources.entries()) {
      const old = oldTableOf(context, index);
      const session = await context.source(index);
      if (!(await tableExists(session, old))) continue;
      const mine = all.filter((key) => (holderOf.get(key) ?? 0) === index);
      await writeBackRows(session, { ...table, name: old.name }, mine, mine.flatMap((key) => rows.get(key) ?? []));
    }
    for (const [index, source] of adoption.sources.entries()) {
      const session = await context.source(index);
      if (source.node !== undefined && await relationExists(session, adoption.schema, adoption.keptName)) {
        await dropAdoptedTable(session, adoption, migrationId);
        await renameTable(session, adoption.schema, adoption.keptName, adoption.name);
      }
      await unfenceSourceTable(session, { schema: adoption.schema, name: adoption.name });
      await dropSourceFenceFunction(session);
      await dropSourceRowSums(session);
    }
    for (const node of context.nodes) await dropAdoptedTable(await context.node(node.name), adoption, migrationId);
    await unregisterAdoptedTable(catalog, adoption);
    await setAdoptionState(catalog, migrationId, 'rolled_back');
    await finishAdoptionMigration(catalog, migrationId, 'rolled_back', 'rolled back by reshard rollback');
    return { migrationId, table: adoption.name, outcome: 'returned', keysReturned: all.length, newKeys: newKeys.length, newKeysTo: rule !== undefined ? 'the source rule' : 'the first source' };
  });
}

