import type { NodeRecord } from '../catalog/nodes.js';
import type { Queryable } from '../plumbing/queryable.js';
import { capacityOf, HEADROOM_FRACTION_DEFAULT } from '../coordinator/nodeSpaces.js';
import { formatBytes } from '../core/bytes.js';
import { measureNodeSpace } from '../node/diskSpace.js';
import { capacityUnknownWarning } from '../planner/headroom.js';
import type { DoctorFinding } from './doctorFinding.js';

/**
 * doctor's `capacity` check: a node whose capacity is unknown (remote, no
 * --capacity) is a warning, since the disk headroom rule does nothing for it.
 */
export async function capacityFinding(node: NodeRecord, client: Queryable): Promise<DoctorFinding> {
  const measured = await measureNodeSpace(client, node.connection.host);
  const capacityBytes = capacityOf(node, measured);
  if (capacityBytes === undefined) {
    const warning = capacityUnknownWarning([node.name], HEADROOM_FRACTION_DEFAULT);
    return { severity: 'warning', node: node.name, check: 'capacity', message: warning.message, fix: warning.fix, fixed: false };
  }
  const source = node.capacityBytes !== undefined ? 'configured' : 'its filesystem, on this machine';
  return { severity: 'ok', node: node.name, check: 'capacity', message: `uses ${formatBytes(measured.usedBytes)} of ${formatBytes(capacityBytes)} (${source})`, fix: undefined, fixed: false };
}
