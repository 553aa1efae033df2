export type { PlannerNode, PlanInput, PlannedMove, Plan } from './types.js';
export { DRAINED_NODE_CONCURRENCY_MAX } from './types.js';
export { validatePlanInput, compareNames } from './validatePlanInput.js';
export { targetSlotCounts, exactWeights, type WeightedNode } from './targetCounts.js';
export { chooseMoves, PLACEMENT_STEPS_MAX, type ChosenMove } from './chooseMoves.js';
export { scheduleWaves, wavesLowerBound } from './schedule.js';
export { planRebalance, assertPlanValid } from './planRebalance.js';
export {
  compareStrategies,
  rangeMovedFraction,
  moduloMovedFraction,
  type Comparison,
  type StrategyResult,
} from './compareStrategies.js';
export {
  movementMatrix,
  formatMovementMatrix,
  formatTable,
  type MovementMatrix,
  type MovementCell,
} from './movementMatrix.js';
export { formatComparison } from './formatComparison.js';
export { applyHeadroom, capacityUnknown, capacityUnknownWarning, movesCrossHeadroom, type NodeSpace, type HeadroomRule, type DeferredMove } from './headroom.js';
export { nodeShares, type LoadNode, type NodeShare, type SlotLoadOf } from './loadShares.js';
export { planLoadMoves, isOverloaded, loadAboveShares, type LoadPlanInput, type LoadPlan, type LoadMove, type Unresolved } from './loadMoves.js';
export { loadTriggers, type LoadTrigger, type TriggerSettings } from './loadTriggers.js';
export { headroomTriggers, planHeadroomMoves, type HeadroomTrigger, type HeadroomPlanInput } from './headroomMoves.js';
export { hotSlotSplit, type SplitCandidate } from './hotSlotSplit.js';
