import { ProutCommand } from '../../../gen/prfleet/v1/agent.js';
import { Precondition } from '../../../gen/prfleet/v1/control.js';
import { PlanStep, RolloutPhase, StepState } from '../../../gen/prfleet/v1/fleet.js';
import { Semaphore } from '../../../common/semaphore.js';
import { describeProut, inverseOf, stepIdOf } from '../plan-model.js';
import type { SelectedUnit } from '../selection.js';
import type { StepSender } from './step-sender.js';
import type { Completed } from './types.js';

/** The undo of completed step `c`, expecting `precondition`; undefined when the step has no inverse. */
export function undoStep(
  luId: string,
  c: Completed,
  precondition: Precondition,
): PlanStep | undefined {
  const inverse = inverseOf(c.step);
  if (inverse === undefined) return undefined;
  return PlanStep.fromPartial({
    ...c.step,
    stepId: stepIdOf(luId, c.step.agentId, c.step.path, inverse, precondition),
    prout: inverse,
    precondition,
    description: `undo: ${c.step.agentId}:${c.step.path} ${describeProut(inverse)}`,
    reversible: false,
  });
}

/**
 * Undoes the completed steps of one LU, newest first, stopping at the first that cannot be undone, is refused,
 * or fails; `onUndone` counts each undo that ran.
 */
async function rollbackUnit(
  sender: StepSender,
  unit: SelectedUnit,
  done: readonly Completed[],
  onUndone: () => void,
): Promise<void> {
  const luId = unit.luId;
  // Each undo expects the state the previous one left (read after it), the first the last step's post-state.
  let expected = done[done.length - 1]?.post ?? Precondition.fromPartial({});
  for (const c of [...done].reverse()) {
    const undo = undoStep(luId, c, expected);
    if (undo === undefined) {
      sender.stepEvent(c.step, StepState.STEP_STATE_FAILED, RolloutPhase.ROLLOUT_PHASE_ROLLBACK, {
        message: `cannot be undone (${describeProut(c.step.prout ?? ProutCommand.fromPartial({}))}); rollback of ${luId} stops here`,
      });
      break;
    }
    const { check, verdict } = await sender.checkAndSend(
      unit,
      undo,
      RolloutPhase.ROLLOUT_PHASE_ROLLBACK,
    );
    if (check.error !== undefined || check.mismatch !== '') {
      sender.stepEvent(
        undo,
        check.error !== undefined
          ? StepState.STEP_STATE_FAILED
          : StepState.STEP_STATE_PRECONDITION_FAILED,
        RolloutPhase.ROLLOUT_PHASE_ROLLBACK,
        {
          message: `not sent: ${check.error ?? `the LU changed since the step: ${check.mismatch}`}; rollback of ${luId} stops here`,
        },
      );
      break;
    }
    if (verdict !== 'succeeded') break;
    onUndone();
    const after = await sender.readPost(unit, undo);
    if (after === undefined) break;
    expected = after;
  }
}

/** Undoes completed steps, newest first per LU, LUs in parallel; each inverse is guarded by the post-state. */
export async function rollback(
  sender: StepSender,
  completed: ReadonlyMap<string, readonly Completed[]>,
  maxConcurrency: number,
  onUndone: () => void,
): Promise<void> {
  const lanes = new Semaphore(maxConcurrency);
  await Promise.all(
    [...completed].map(async ([luId, done]) => {
      if (done.length === 0) return;
      const unit = sender.input.units.find((u) => u.luId === luId);
      if (unit === undefined) return;
      await lanes.acquire();
      try {
        await rollbackUnit(sender, unit, done, onUndone);
      } finally {
        lanes.release();
      }
    }),
  );
}
