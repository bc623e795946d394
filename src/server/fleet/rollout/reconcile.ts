import { CommandResult, Outcome, outcomeToJSON } from '../../../gen/prfleet/v1/scsi.js';
import { type PlanStep, type RolloutPhase, StepState } from '../../../gen/prfleet/v1/fleet.js';
import { systemClock } from '../../../common/clock.js';
import { historyEntryOf } from '../../commands/record.js';
import type { SelectedUnit } from '../selection.js';
import { resultJson } from './attempt-journal.js';
import { judgeEffect } from './pipeline.js';
import type { StepSender } from './step-sender.js';
import type { StepVerdict } from './types.js';

/** Pause between reconciliation reads while an agent reconnects, ms. */
const RECONCILE_POLL_MS = 100;

/** Records a step the reconciliation read shows as applied: journal and history, then the step event. */
async function recordApplied(
  sender: StepSender,
  step: PlanStep,
  phase: RolloutPhase,
  key: string,
  generation: number,
): Promise<void> {
  const history = {
    ...historyEntryOf(sender.stepInput(step, key, false), CommandResult.fromPartial({})),
    outcome: 'RECONCILED_APPLIED',
  };
  await sender.deps.store.journal.complete(
    key,
    resultJson(undefined, {
      sent: true,
      outcome: 'RECONCILED_APPLIED',
      applied: true,
      message: `read generation ${generation}`,
    }),
    history,
  );
  sender.stepEvent(step, StepState.STEP_STATE_RECONCILED_APPLIED, phase, {
    idempotencyKey: key,
    message: `the LU shows the step took effect (PRgeneration ${generation})`,
  });
}

/** What one re-send came to: the step's verdict, or why to keep reading (and whether to pause first). */
type Resend =
  | { readonly verdict: StepVerdict }
  | { readonly why: string; readonly resent: boolean; readonly pause: boolean };

/**
 * Re-sends a step a read showed had not run, under its own idempotency key: an agent that already has the
 * first copy refuses this one as a duplicate, so the PROUT cannot run twice.
 */
async function resend(
  sender: StepSender,
  step: PlanStep,
  phase: RolloutPhase,
  key: string,
): Promise<Resend> {
  const again = await sender.dispatchProut(step, key, phase, {
    precondition: false,
    note: 're-sent after reconciliation showed it had not run',
  });
  if (again.kind !== 'result') {
    const why = again.kind === 'not-sent' ? again.message : again.check.mismatch;
    return { why, resent: false, pause: true };
  }
  const r = again.result;
  const name = outcomeToJSON(r.outcome);
  if (r.outcome === Outcome.OUTCOME_GOOD) {
    sender.stepEvent(step, StepState.STEP_STATE_SUCCEEDED, phase, {
      result: r,
      idempotencyKey: key,
      message: 're-sent under the same idempotency key after a read showed it had not run',
    });
    return { verdict: 'succeeded' };
  }
  if (r.outcome === Outcome.OUTCOME_REFUSED && r.message.includes('duplicate idempotency key')) {
    // The agent has the first copy (running, or ran): wait for its effect to show.
    return { why: r.message, resent: true, pause: true };
  }
  if (
    r.outcome === Outcome.OUTCOME_UNKNOWN ||
    r.outcome === Outcome.OUTCOME_TIMEOUT ||
    r.outcome === Outcome.OUTCOME_TRANSPORT_ERROR
  ) {
    return { why: `${name} again`, resent: true, pause: false };
  }
  sender.stepEvent(step, StepState.STEP_STATE_FAILED, phase, {
    result: r,
    idempotencyKey: key,
    message: `re-sent after reconciliation; the device answered ${name}`,
  });
  return { verdict: 'failed' };
}

/**
 * Settles an UNKNOWN step by reading the LU: applied → done; not applied with the LU unchanged → re-send under
 * the same idempotency key (an agent that already has the first copy refuses the second, so it cannot run
 * twice) and keep reading; anything else → superseded (the LU is re-planned). Gives up after reconcileMs,
 * leaving the journal entry `unknown` for an operator.
 */
export async function reconcile(
  sender: StepSender,
  unit: SelectedUnit,
  step: PlanStep,
  phase: RolloutPhase,
  key: string,
): Promise<StepVerdict> {
  const settings = sender.input.settings;
  const clock = sender.deps.clock ?? systemClock;
  const deadline = clock.now() + (settings.reconcileMs ?? settings.timeoutMs);
  let resent = false;
  let lastWhy = 'no path answered';
  while (clock.now() < deadline) {
    const state = await sender.readState(unit, step);
    if (state === undefined) {
      lastWhy = 'no online path answered the reconciliation read';
      await clock.sleep(RECONCILE_POLL_MS);
      continue;
    }
    const verdict = judgeEffect(step, state);
    if (verdict === 'applied') {
      await recordApplied(sender, step, phase, key, state.generation);
      return 'succeeded';
    }
    if (verdict === 'other') {
      sender.stepEvent(step, StepState.STEP_STATE_RECONCILED_NOT_APPLIED, phase, {
        idempotencyKey: key,
        message: `the LU changed in ways this step does not explain (PRgeneration ${state.generation}); re-planning`,
      });
      return 'superseded';
    }
    if (!resent) {
      const sent = await resend(sender, step, phase, key);
      if ('verdict' in sent) return sent.verdict;
      resent = sent.resent;
      lastWhy = sent.why;
      if (sent.pause) await clock.sleep(RECONCILE_POLL_MS);
      continue;
    }
    await clock.sleep(RECONCILE_POLL_MS);
  }
  sender.stepEvent(step, StepState.STEP_STATE_RECONCILED_NOT_APPLIED, phase, {
    idempotencyKey: key,
    message: `could not settle the outcome (${lastWhy}); the journal keeps it UNKNOWN: audit the LU before retrying`,
  });
  return 'failed';
}
