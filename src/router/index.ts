export { Router, type RouterOptions, type RoutingKey, ROUTER_LEASE_MS_DEFAULT, ROUTER_HOLD_TIMEOUT_MS_DEFAULT } from './router.js';
export { slotOf, slotOfKey, type ShardKeyType, type ShardKeyValue } from '../core/hash.js';
export { ReshardError } from '../core/errors.js';
export { RoutedCallError, type RouterErrorCode } from './routedError.js';
export { FENCE_SQLSTATE as FROZEN_SQLSTATE, MOVED_SQLSTATE } from '../node/nodeHelpers.js';
export { NOT_HOLDER_SQLSTATE } from '../node/referenceTable.js';
export { AdoptingTable, type AdoptingTableOptions } from './adoptingTable.js';
