import { describeLeaves, type MovePlanView } from './moveStep.js';

const leaves = describeLeaves;

/**
 * The online mover's steps for one slot, as --dry-run shows them. The steps
 * themselves run in mover/onlineBatch.ts, where slots between the same two
 * nodes share the publication and subscription.
 */
export const ONLINE_MOVE_STEP_DESCRIPTIONS: readonly { name: string; describe(view: MovePlanView): string }[] = [
  { name: 'prepare', describe: (view) => `on ${view.targetName}: create ${leaves(view)} standalone, shaped like the parents, with CHECK satisfies_hash_partition(parent, ${view.modulus}, ${view.slot}, key)` },
  { name: 'stream', describe: (view) => `on ${view.sourceName}: publish ${leaves(view)} (shared with the other slots ${view.sourceName} → ${view.targetName}) and create a logical replication slot with an exported snapshot; copy the leaves at that snapshot (parallel binary COPY); on ${view.targetName}: subscribe to the slot without a copy of its own; wait until the apply lag is small (pg_stat_replication.replay_lsn)` },
  { name: 'freeze', describe: (view) => `catalog: slot ${view.slot} frozen (epoch + 1), wait for every live router's acknowledgement; on ${view.sourceName}: LOCK ${leaves(view)} IN EXCLUSIVE MODE and fence them with a trigger (SQLSTATE RSM01), one transaction` },
  { name: 'sync', describe: (view) => `take the WAL position the fence read inside its transaction; poll every few ms until the subscription has replayed past it; compare row counts and checksums on both sides (bounded by the freeze budget, else unfreeze and retry)` },
  { name: 'attach', describe: (view) => `on ${view.targetName}: ATTACH ${leaves(view)} (proven by the CHECK, no scan)` },
  { name: 'switch', describe: (view) => `catalog, one transaction: slot ${view.slot} owner := ${view.targetName}, state active, epoch + 1, NOTIFY (the point of no return); routers release held work to ${view.targetName}` },
  { name: 'cleanup', describe: (view) => `drop the subscription (and its replication slot) and the publication; on ${view.targetName}: drop the CHECK; on ${view.sourceName}: DETACH ${leaves(view)} CONCURRENTLY, then DROP` },
];
