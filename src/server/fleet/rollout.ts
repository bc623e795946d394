/**
 * The rollout engine (Apply, Takeover, the registration reconciler): its parts live in rollout/ — run.ts (plans,
 * lanes, counts), step-sender.ts (one journaled PROUT through the command pipeline), reconcile.ts (an UNKNOWN
 * outcome settled by reading the LU), rollback.ts, attempt-journal.ts and pipeline.ts.
 */
export { newOperationId, runRollout } from './rollout/run.js';
export { judgeEffect } from './rollout/pipeline.js';
export { HISTORY_REASON_MAX, type RolloutInput, type RolloutSettings } from './rollout/types.js';
