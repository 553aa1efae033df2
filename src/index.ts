/** reshard as a library: the same operations the CLI runs. */
export { initCluster } from './admin/initCluster.js';
export { addNode, type AddNodeRequest } from './admin/addNode.js';
export { setNode, type SetNodeRequest } from './admin/setNode.js';
export { removeNode } from './admin/removeNode.js';
export { parseConnectionHere as parseConnectionString } from './plumbing/conninfoSources.js';
export type { ConnectionSettings } from './core/connection.js';
export { createShardedTable, type CreateTableRequest } from './admin/createShardedTable.js';
export { rebalance, prepareRebalance, resumeMigration } from './admin/rebalance.js';
export { verifyCluster } from './admin/verifyCluster.js';
export { runMigration } from './coordinator/runMigration.js';
export type { ClusterAccess } from './plumbing/clusterAccess.js';
export type { MigrationEvent } from './plumbing/migrationEvents.js';
export { slotOf, slotOfKey, type ShardKeyType } from './core/hash.js';
export { ReshardError } from './core/errors.js';
export { planRebalance, compareStrategies } from './planner/index.js';
export { runDoctor, type DoctorFinding, type DoctorReport } from './admin/doctor.js';
