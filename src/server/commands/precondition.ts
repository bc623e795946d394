import { Command, PrinCommand } from '../../gen/prfleet/v1/agent.js';
import type { Precondition } from '../../gen/prfleet/v1/control.js';
import { Outcome, outcomeToJSON, PrinAction } from '../../gen/prfleet/v1/scsi.js';
import { checkSupported } from '../../common/capabilities.js';
import { ErrorReason, failedPrecondition } from '../../common/errors.js';
import { formatKey } from '../../scsi/keys.js';
import type { CommandInput, Next, ReservationState, RunOptions } from './types.js';

/** PreconditionFailure violation type when the check's read failed (nothing was sent either way). */
export const PRECONDITION_UNREADABLE = 'PRECONDITION_READ';

/** What differs between `precondition` and the state read ('' when it holds). */
export function preconditionMismatch(
  precondition: Precondition,
  got: { generation: number; reserved: boolean; key: bigint } | undefined,
  generation: number,
): string {
  const mismatches: string[] = [];
  if (
    precondition.expectedGeneration !== undefined &&
    generation !== precondition.expectedGeneration
  ) {
    mismatches.push(`PRgeneration is ${generation}, expected ${precondition.expectedGeneration}`);
  }
  const expected = precondition.expectedHolderKey;
  if (expected !== undefined && got !== undefined) {
    if (expected === 0n && got.reserved) {
      mismatches.push(`the LU is reserved (holder ${formatKey(got.key)}), expected no reservation`);
    } else if (expected !== 0n && (!got.reserved || got.key !== expected)) {
      mismatches.push(
        got.reserved
          ? `the holder is ${formatKey(got.key)}, expected ${formatKey(expected)}`
          : `the LU is not reserved, expected holder ${formatKey(expected)}`,
      );
    }
  }
  return mismatches.join('; ');
}

/**
 * Reads the LU through the command's own path and compares it with `precondition`. Throws FAILED_PRECONDITION
 * {PRECONDITION_MISMATCH} when it differs or cannot be read (violation type {@link PRECONDITION_UNREADABLE}
 * then); nothing is sent either way. Returns the state read (the fleet engine keeps it as the prior step's
 * post-state).
 */
export async function checkPrecondition(
  input: CommandInput,
  precondition: Precondition,
  options: RunOptions,
  dispatch: Next,
): Promise<ReservationState | undefined> {
  const { target } = input;
  const subject = `logical-units/${target.luId}`;
  const wantHolder = precondition.expectedHolderKey !== undefined;
  // READ RESERVATION carries PRgeneration too, so one read covers both checks; READ KEYS when only the
  // generation matters (every SPC-3+ device supports it).
  const action = wantHolder
    ? PrinAction.PRIN_ACTION_READ_RESERVATION
    : PrinAction.PRIN_ACTION_READ_KEYS;
  const read = Command.fromPartial({
    path: target.path,
    kind: { $case: 'prin', value: PrinCommand.fromPartial({ action }) },
  });
  const unsupported = checkSupported(target.capabilities, read);
  if (unsupported !== undefined) {
    throw failedPrecondition(ErrorReason.UNSUPPORTED_BY_DEVICE, {
      type: 'CAPABILITY',
      subject,
      description: `cannot check the precondition: ${unsupported}`,
    });
  }
  const { result } = await dispatch(
    {
      ...input,
      command: read,
      journal: 'caller',
      settle: undefined,
      onSend: undefined,
      onResult: undefined,
    },
    options,
  );
  const data = result.data;
  if (result.outcome !== Outcome.OUTCOME_GOOD || data === undefined) {
    throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
      type: PRECONDITION_UNREADABLE,
      subject,
      description: `could not check the precondition: the read answered ${outcomeToJSON(result.outcome)}${
        result.message === '' ? '' : ` (${result.message})`
      }; nothing was sent`,
    });
  }
  let state: ReservationState | undefined;
  let generation: number;
  if (data.$case === 'readReservation') {
    const r = data.value;
    state = { generation: r.generation, reserved: r.reserved, key: r.key, type: r.type };
    generation = r.generation;
  } else if (data.$case === 'readKeys') {
    generation = data.value.generation;
  } else {
    throw new Error(`precondition read returned ${data.$case} data`);
  }
  const mismatch = preconditionMismatch(precondition, state, generation);
  if (mismatch !== '') {
    throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
      type: 'PRECONDITION',
      subject,
      description: `precondition failed: ${mismatch}; nothing was sent`,
    });
  }
  return state;
}
