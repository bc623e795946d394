import type { PlanStep } from '../../../gen/prfleet/v1/fleet.js';
import { RolloutPhase } from '../../../gen/prfleet/v1/fleet.js';
import { CommandResult, Outcome, outcomeToJSON } from '../../../gen/prfleet/v1/scsi.js';
import type { Settle } from '../../commands/types.js';
import type { JsonValue, OperationEntry } from '../../store/index.js';
import type { FleetStore } from '../deps.js';

/** Journal record of one step attempt (the `result` column). */
export interface AttemptRecord {
  readonly sent: boolean;
  readonly outcome: string;
  readonly applied: boolean;
  readonly message?: string;
  readonly commandId?: string;
}

/** The journal's `result` column of an attempt: the record, with the device's result when there is one. */
export function resultJson(result: CommandResult | undefined, extra: AttemptRecord): JsonValue {
  return {
    ...extra,
    ...(result === undefined ? {} : { result: CommandResult.toJSON(result) as JsonValue }),
  };
}

/** The record of a journal entry written by resultJson, or undefined for anything else. */
export function attemptOf(entry: OperationEntry): AttemptRecord | undefined {
  const r = entry.result;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return undefined;
  return r as unknown as AttemptRecord;
}

/** Journal key prefix of a step's attempts: `fleet/<operation>/[rollback/]<step id>`. */
export function attemptBase(operationId: string, step: PlanStep, phase: RolloutPhase): string {
  return `fleet/${operationId}/${phase === RolloutPhase.ROLLOUT_PHASE_ROLLBACK ? 'rollback/' : ''}${step.stepId}`;
}

/**
 * How a step attempt's outcome is written: journal record and history entry in one transaction (a result that
 * never reached the device gets no history entry; a duplicate refusal changes nothing, the first copy runs).
 */
export function settleStep(journal: FleetStore['journal'], key: string, note?: string): Settle {
  return async (result, history) => {
    const name = outcomeToJSON(result.outcome);
    const base = {
      outcome: name,
      commandId: result.commandId,
      ...(note ? { message: note } : {}),
    };
    switch (result.outcome) {
      case Outcome.OUTCOME_GOOD:
        await journal.complete(
          key,
          resultJson(result, { ...base, sent: true, applied: true }),
          history,
        );
        return;
      case Outcome.OUTCOME_REFUSED:
      case Outcome.OUTCOME_OS_ERROR:
        if (result.message.includes('duplicate idempotency key')) return;
        await journal.complete(
          key,
          resultJson(result, { ...base, sent: false, applied: false, message: result.message }),
        );
        return;
      case Outcome.OUTCOME_UNKNOWN:
      case Outcome.OUTCOME_TIMEOUT:
      case Outcome.OUTCOME_TRANSPORT_ERROR:
        await journal.markUnknown(
          key,
          resultJson(result, { ...base, sent: true, applied: false, message: result.message }),
          history,
        );
        return;
      default:
        await journal.complete(
          key,
          resultJson(result, { ...base, sent: true, applied: false }),
          history,
        );
    }
  };
}
