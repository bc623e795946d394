/**
 * What a SCSI exchange amounts to, in the order of scsi-pr.md §10.3: reservation conflict first (status 18h, or
 * host_status DID_NEXUS_FAILURE on kernels before about 6.1), then CHECK CONDITION with its sense, then transport
 * errors (DID_TIME_OUT → timeout), then other statuses, else GOOD.
 */
import { DRIVER_SENSE, HostStatus, ScsiStatus, SenseKey } from './constants.js';
import { ScsiDecodeError } from './errors.js';
import { decodeSense, type Sense } from './sense.js';

/** Kinds of answer, most specific first. */
export type ResponseKind =
  | 'good'
  | 'reservation-conflict'
  | 'check-condition'
  | 'unit-attention'
  | 'busy'
  | 'task-set-full'
  | 'task-aborted'
  | 'other-status'
  | 'transport-error'
  | 'timeout';

/** Result of classifyResponse; `sense` when a CHECK CONDITION carried decodable sense. */
export interface Classification {
  kind: ResponseKind;
  sense?: Sense;
  /** Why the sense bytes could not be decoded, when they could not. */
  senseError?: ScsiDecodeError;
}

/**
 * Classifies a response (a ScsiResponse fits). A CHECK CONDITION whose sense key is UNIT ATTENTION is
 * 'unit-attention' (the command did not run); undecodable sense still gives 'check-condition', with senseError.
 */
export function classifyResponse(r: {
  status: number;
  hostStatus: number;
  driverStatus: number;
  sense: Uint8Array;
}): Classification {
  if (
    r.status === ScsiStatus.RESERVATION_CONFLICT ||
    r.hostStatus === HostStatus.DID_NEXUS_FAILURE
  ) {
    return { kind: 'reservation-conflict' };
  }
  if (r.status === ScsiStatus.CHECK_CONDITION || (r.driverStatus & 0x0f) === DRIVER_SENSE) {
    try {
      const sense = decodeSense(r.sense);
      return {
        kind: sense.senseKey === SenseKey.UNIT_ATTENTION ? 'unit-attention' : 'check-condition',
        sense,
      };
    } catch (e) {
      if (!(e instanceof ScsiDecodeError)) throw e;
      // DRIVER_SENSE with GOOD status and no readable sense is not a failure.
      if (r.status === ScsiStatus.CHECK_CONDITION)
        return { kind: 'check-condition', senseError: e };
    }
  }
  if (r.hostStatus === HostStatus.DID_TIME_OUT) return { kind: 'timeout' };
  if (r.hostStatus !== HostStatus.DID_OK) return { kind: 'transport-error' };
  switch (r.status) {
    case ScsiStatus.GOOD:
      return { kind: 'good' };
    case ScsiStatus.BUSY:
      return { kind: 'busy' };
    case ScsiStatus.TASK_SET_FULL:
      return { kind: 'task-set-full' };
    case ScsiStatus.TASK_ABORTED:
      return { kind: 'task-aborted' };
    default:
      return { kind: 'other-status' };
  }
}
