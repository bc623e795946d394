import type { Precondition } from '../../../gen/prfleet/v1/control.js';
import type { PlanStep } from '../../../gen/prfleet/v1/fleet.js';
import type { UnitAnalysis } from '../analyze.js';
import type { KeyIndex } from '../key-index.js';
import type { LuObservation } from '../observe.js';
import type { UnitPlan } from '../plan-model.js';
import type { SelectedUnit } from '../selection.js';

/** Guard rails of a rollout, defaults filled in. */
export interface RolloutSettings {
  /** LUs worked on at once. */
  readonly maxConcurrency: number;
  /** Failed steps after which no new step starts. */
  readonly errorThreshold: number;
  /** Undo completed steps when the rollout stops early. */
  readonly rollbackOnAbort: boolean;
  /** Device timeout per command, ms. */
  readonly timeoutMs: number;
  /** Re-plans of one LU after it changed under us. */
  readonly maxReplans: number;
  /** Rollout id (journal keys derive from it). */
  readonly operationId: string;
  /** Why (history). */
  readonly reason: string;
  /** Plan and report only. */
  readonly dryRun: boolean;
  /** Who asked (history actor). */
  readonly actor: string;
  /** Longest wait while reconciling an UNKNOWN outcome, ms. @default timeoutMs */
  readonly reconcileMs?: number;
}

/** What a rollout runs. */
export interface RolloutInput {
  /** LUs in the rollout. */
  readonly units: readonly SelectedUnit[];
  /** Plans one freshly read LU (desired state for Apply, victim keys for Takeover). */
  readonly planner: (obs: LuObservation, analysis: UnitAnalysis) => UnitPlan;
  /** Steps to run first instead of planning (from an earlier Plan), by LU id. */
  readonly givenSteps?: ReadonlyMap<string, readonly PlanStep[]>;
  /** The key registry, loaded. */
  readonly keys: KeyIndex;
  /** Guard rails. */
  readonly settings: RolloutSettings;
  /** Added to the history reason of each PREEMPT (AND ABORT) step: a takeover's verdict and evidence. */
  readonly preemptRecord?: string;
}

/** The history's reason column holds at most this many characters. */
export const HISTORY_REASON_MAX = 2000;

/** How one step ended: ran, failed, or overtaken by a change of the LU (re-plan it). */
export type StepVerdict = 'succeeded' | 'failed' | 'superseded';

/** A step's precondition as checked: unreadable (`error`), differing (`mismatch`), or held (with the state read). */
export interface PreconditionCheck {
  readonly error?: string;
  readonly mismatch: string;
  readonly read?: Precondition;
}

/** A step that ran, kept for the rollback. */
export interface Completed {
  readonly step: PlanStep;
  /** Generation and holder right after the step (the next read), the rollback's precondition. */
  post?: Precondition;
}
