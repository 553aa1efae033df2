import type { NodeRecord } from '../catalog/nodes.js';
import type { ReferenceTableRecord } from '../catalog/referenceTables.js';
import { describeTable } from '../catalog/tables.js';
import { ReshardError } from '../core/errors.js';
import { referenceCopyStats, referenceSubscriptionName, referenceSubscriptionState, referenceSyncStates } from '../node/referenceTable.js';
import { subscriptionWorkerStatus } from '../node/replicationStatus.js';
import type { ClusterAccess } from '../plumbing/clusterAccess.js';
import { connectNode } from '../plumbing/connectNode.js';

/** One reference copy that is not what its holder holds, or cannot stay so. */
export interface ReferenceCopyProblem {
  node: string;
  table: string;
  kind: 'missing_table' | 'missing_subscription' | 'disabled_subscription' | 'subscription_error' | 'not_synced' | 'differs';
  message: string;
  fix: string;
}

export interface ReferenceCopyReport {
  /** Per table, the holder's rows. */
  rowsByTable: Record<string, number>;
  problems: ReferenceCopyProblem[];
}

/**
 * Every copy of every reference table against its holder's: the table, the
 * subscription (present, enabled, no errors, synced), then rows and an
 * order-independent checksum. With `compareRows` false only the replication
 * is checked (doctor: no table scans).
 */
export async function checkReferenceCopies(
  access: Pick<ClusterAccess, 'passwords'>, nodes: readonly NodeRecord[], tables: readonly ReferenceTableRecord[],
  options: { compareRows: boolean; onlyNodes?: readonly string[] },
): Promise<ReferenceCopyReport> {
  const report: ReferenceCopyReport = { rowsByTable: {}, problems: [] };
  const members = nodes.filter((node) => node.state !== 'removed');
  for (const table of tables) {
    const label = describeTable(table);
    const holder = members.find((node) => node.name === table.holder);
    if (!holder) {
      report.problems.push({ node: table.holder, table: label, kind: 'missing_table', message: `the holder "${table.holder}" of ${label} is not a node of the cluster`, fix: 'add the node back' });
      continue;
    }
    let expected: { rows: number; checksum: string } | undefined;
    if (options.compareRows) {
      const client = await connectNode(holder, access.passwords);
      try {
        expected = await referenceCopyStats(client, table);
      } finally {
        await client.end().catch(() => {});
      }
      report.rowsByTable[label] = expected.rows;
    }
    const copies = members.filter((member) => member.name !== table.holder && (options.onlyNodes === undefined || options.onlyNodes.includes(member.name)));
    for (const node of copies) {
      const problem = (kind: ReferenceCopyProblem['kind'], message: string, fix: string): void => {
        report.problems.push({ node: node.name, table: label, kind, message: `${label} on ${node.name}: ${message}`, fix });
      };
      const name = referenceSubscriptionName(table.holder, node.name);
      const client = await connectNode(node, access.passwords);
      try {
        const stats = await referenceCopyStats(client, table);
        if (!stats.exists) {
          problem('missing_table', 'the copy is missing', 're-add the node (`reshard node add`) or create the table there and subscribe it');
          continue;
        }
        const subscription = await referenceSubscriptionState(client, name);
        if (!subscription.exists) {
          problem('missing_subscription', `subscription ${name} is missing, the copy no longer follows ${table.holder}`,
            `on ${node.name}: CREATE SUBSCRIPTION ${name} … PUBLICATION reshard_ref (re-adding the node does it)`);
        } else if (!subscription.enabled) {
          problem('disabled_subscription', `subscription ${name} is disabled, the copy no longer follows ${table.holder}`, `on ${node.name}: ALTER SUBSCRIPTION ${name} ENABLE`);
        } else {
          const worker = await subscriptionWorkerStatus(client, name);
          if (worker.applyErrorCount + worker.syncErrorCount > 0 && worker.workerPid === undefined) {
            problem('subscription_error', `subscription ${name} stopped on an error (${worker.applyErrorCount} apply, ${worker.syncErrorCount} sync)`,
              `read ${node.name}'s server log for the failing change and fix it on ${node.name}`);
          }
          const state = (await referenceSyncStates(client, name)).get(`${table.schema}.${table.name}`);
          if (state !== 'r') {
            problem('not_synced', `the initial copy is not done (state ${state ?? 'none'})`, `wait, or read ${node.name}'s server log`);
          }
        }
        if (expected && (stats.rows !== expected.rows || stats.checksum !== expected.checksum)) {
          problem('differs', `${stats.rows} rows (checksum ${stats.checksum}) but the holder ${table.holder} has ${expected.rows} (checksum ${expected.checksum})`,
            `make sure the subscription runs, then on ${node.name}: ALTER SUBSCRIPTION ${name} REFRESH PUBLICATION after truncating the copy`);
        }
      } finally {
        await client.end().catch(() => {});
      }
    }
  }
  return report;
}

/**
 * Refuses a plan that moves slots onto a node whose reference copies are not
 * in sync: a join there would silently miss rows. (`node add` syncs them
 * before it returns; this guards the moment in between and a failed sync.)
 */
export async function assertReferenceCopiesReady(
  access: Pick<ClusterAccess, 'passwords'>, nodes: readonly NodeRecord[], tables: readonly ReferenceTableRecord[], targets: readonly string[],
): Promise<void> {
  if (tables.length === 0 || targets.length === 0) return;
  const report = await checkReferenceCopies(access, nodes, tables, { compareRows: false, onlyNodes: targets });
  const first = report.problems[0];
  if (first) {
    throw new ReshardError('precondition', `no slot can move onto ${first.node} yet: ${first.message}`, `${first.fix}; or \`reshard doctor --fix\`, then rebalance again`);
  }
}
