import type { ProutCommand } from '../../gen/prfleet/v1/agent.js';
import { PrType, ProutAction } from '../../gen/prfleet/v1/scsi.js';
import type { ReconcileVerdict } from './types.js';

/** True for WE-AR and EA-AR, where every registrant is a holder and READ RESERVATION shows key 0. */
export function isAllRegistrants(type: PrType): boolean {
  return (
    type === PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS ||
    type === PrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS
  );
}

/** An LU's PR state as a reconciliation reads it (READ KEYS + READ RESERVATION). */
export interface LuPrState {
  readonly generation: number;
  readonly keys: readonly bigint[];
  readonly reserved: boolean;
  readonly holderKey: bigint;
  readonly type: PrType;
}

/**
 * What a fresh read says about whether `prout` took effect, given the PRgeneration expected before it (its
 * precondition; without one fewer cases can be told apart). 'other': the LU changed in ways the PROUT does not
 * explain, or the read cannot tell. Shared by the command pipeline (a repeated key after UNKNOWN) and the fleet
 * engine (an UNKNOWN step).
 */
export function judgeEffect(
  prout: ProutCommand,
  expectedGeneration: number | undefined,
  state: LuPrState,
): ReconcileVerdict {
  const preGen = expectedGeneration;
  const genSame = preGen !== undefined && state.generation === preGen;
  const genMoved = preGen === undefined || state.generation !== preGen;
  switch (prout.action) {
    case ProutAction.PROUT_ACTION_REGISTER:
    case ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY:
      if (prout.serviceActionKey !== 0n) {
        if (genMoved && state.keys.includes(prout.serviceActionKey)) return 'applied';
        return genSame ? 'not-applied' : 'other';
      }
      if (preGen !== undefined && state.generation === preGen + 1) return 'applied';
      return genSame ? 'not-applied' : 'other';
    case ProutAction.PROUT_ACTION_RESERVE:
      if (
        state.reserved &&
        state.type === prout.type &&
        (state.holderKey === prout.reservationKey || isAllRegistrants(prout.type))
      )
        return 'applied';
      return !state.reserved && (preGen === undefined || genSame) ? 'not-applied' : 'other';
    case ProutAction.PROUT_ACTION_RELEASE:
      if (
        !state.reserved ||
        (state.holderKey !== prout.reservationKey && !isAllRegistrants(state.type))
      )
        return 'applied';
      return 'not-applied';
    case ProutAction.PROUT_ACTION_PREEMPT:
    case ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT:
      if (genMoved && !state.keys.includes(prout.serviceActionKey)) return 'applied';
      return genSame && state.keys.includes(prout.serviceActionKey) ? 'not-applied' : 'other';
    default:
      return 'other';
  }
}
