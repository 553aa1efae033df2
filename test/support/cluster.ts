import { expect } from 'vitest';
import { addNode } from '../../src/admin/addNode.js';
import { runDoctor } from '../../src/admin/doctor.js';
import { verifyCluster } from '../../src/admin/verifyCluster.js';
import { createShardedTable } from '../../src/admin/createShardedTable.js';
import { initCluster } from '../../src/admin/initCluster.js';
import type { ClusterAccess } from '../../src/plumbing/clusterAccess.js';
import { DEMO_TABLES } from '../../src/demo/demoData.js';
import { noPasswords } from '../../src/plumbing/connectNode.js';
import type { LocalServer } from '../../src/local/localServer.js';

/** The catalog lives on the first server, as in the demo. */
export function accessFor(servers: readonly LocalServer[]): ClusterAccess {
  return { catalog: servers[0]!.connection, passwords: noPasswords };
}

/** init + the first `nodeCount` servers as nodes n1.., no tables (an adoption brings them). */
export async function createEmptyCluster(servers: readonly LocalServer[], nodeCount: number, slots: number): Promise<ClusterAccess> {
  const access = accessFor(servers);
  await initCluster(access, slots);
  for (let index = 0; index < nodeCount; index++) {
    await addNode(access, { name: `n${index + 1}`, connection: servers[index]!.connection });
  }
  return access;
}

/** init + the first `nodeCount` servers as nodes n1.. + the demo tables. */
export async function createDemoCluster(servers: readonly LocalServer[], nodeCount: number, slots: number): Promise<ClusterAccess> {
  const access = await createEmptyCluster(servers, nodeCount, slots);
  for (const table of DEMO_TABLES) {
    await createShardedTable(access, { name: table.name, shardKey: [...table.shardKey], definition: table.definition, ...('colocateWith' in table ? { colocateWith: table.colocateWith } : {}) });
  }
  return access;
}

/** `reshard verify` finds every row where the map says, and `reshard doctor` nothing but ok findings. */
export async function expectClusterClean(access: ClusterAccess): Promise<void> {
  expect((await verifyCluster(access)).problems).toEqual([]);
  const doctor = await runDoctor(access, { fix: false });
  expect(doctor.findings.filter((finding) => finding.severity !== 'ok').map((finding) => `${finding.node} ${finding.check}: ${finding.message}`)).toEqual([]);
}
