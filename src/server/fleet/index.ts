/** The fleet engine: audit, key registry, desired state, plan/apply/takeover (FleetService). */
export { createFleetService, registerFleetService } from './fleet-service.js';
export { rolloutSettings, ROLLOUT_DEFAULTS } from './service/rollout-settings.js';
export { storeErrorToRpc } from './service/store-errors.js';
export type { FleetDeps, FleetStore } from './deps.js';
export { runAudit, AUDIT_DEFAULTS } from './audit.js';
export { runRollout, judgeEffect, type RolloutSettings, type RolloutInput } from './rollout.js';
export { planDesired, planTakeover, type UnitDesire, type TakeoverSpec } from './planner.js';
export { selectUnits, type SelectedUnit } from './selection.js';
