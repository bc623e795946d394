import type { Command } from '../gen/prfleet/v1/agent.js';
import {
  CapabilitiesData,
  CommandResult,
  FullStatusData,
  Outcome,
  ReadKeysData,
  ReadReservationData,
  Sense as ProtoSense,
  UnitAttention,
} from '../gen/prfleet/v1/scsi.js';
import {
  classifyResponse,
  decodeCapabilities,
  decodeFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  decodeSense,
  describeAsc,
  senseKeyName,
  statusName,
  type ScsiRequest,
  type ScsiResponse,
} from '../scsi/index.js';
import { msToDuration, prinServiceActionOf, toScsiRequest, transportIdToProto } from './command.js';

/** Who ran a command and where; copied into every CommandResult. */
export interface ResultContext {
  /** Agent that ran (or refused) the command. */
  readonly agentId: string;
  /** Path (device node) it was for; defaults to Command.path. */
  readonly path?: string;
  /** Logical unit behind the path, when known. */
  readonly luId?: string;
}

/** Extra facts about a device answer that the response itself does not carry. */
export interface BuildResultOptions extends ResultContext {
  /** The bytes actually sent; rebuilt from the command when absent. */
  readonly request?: ScsiRequest;
  /** Sense bytes of unit attentions consumed (and retried) before the command ran. */
  readonly unitAttentions?: readonly Uint8Array[];
  /** When the agent submitted the command. */
  readonly startedAt?: Date;
}

/**
 * Outcome of a device answer, in scsi-pr.md §10.3 order: status 18h or host status 11h is a RESERVATION
 * CONFLICT whatever else is set; host 03h is a TIMEOUT; other host errors are TRANSPORT_ERROR; then the status.
 */
export function outcomeOf(
  response: Pick<ScsiResponse, 'status' | 'hostStatus' | 'driverStatus' | 'sense'>,
): Outcome {
  const { kind } = classifyResponse(response);
  switch (kind) {
    case 'good':
      return Outcome.OUTCOME_GOOD;
    case 'reservation-conflict':
      return Outcome.OUTCOME_RESERVATION_CONFLICT;
    case 'check-condition':
    case 'unit-attention':
      return Outcome.OUTCOME_CHECK_CONDITION;
    case 'busy':
      return Outcome.OUTCOME_BUSY;
    case 'task-set-full':
      return Outcome.OUTCOME_TASK_SET_FULL;
    case 'task-aborted':
      return Outcome.OUTCOME_TASK_ABORTED;
    case 'other-status':
      return Outcome.OUTCOME_OTHER_STATUS;
    case 'transport-error':
      return Outcome.OUTCOME_TRANSPORT_ERROR;
    case 'timeout':
      return Outcome.OUTCOME_TIMEOUT;
  }
}

/**
 * Sense bytes → proto Sense (key, ASC/ASCQ and their words, field pointer). Undefined for empty sense. Bytes the
 * codec cannot decode are kept raw, with the reason in `description`.
 */
export function decodeSenseToProto(bytes: Uint8Array): ProtoSense | undefined {
  if (bytes.length === 0) return undefined;
  const raw = Buffer.from(bytes);
  let sense;
  try {
    sense = decodeSense(bytes);
  } catch (e) {
    return ProtoSense.fromPartial({
      raw,
      description: `undecodable sense: ${(e as Error).message}`,
    });
  }
  return ProtoSense.fromPartial({
    raw,
    responseCode: sense.responseCode,
    deferred: sense.deferred,
    senseKey: sense.senseKey,
    senseKeyName: senseKeyName(sense.senseKey),
    asc: sense.asc,
    ascq: sense.ascq,
    description: describeAsc(sense.asc, sense.ascq),
    fieldPointer:
      sense.fieldPointer === undefined
        ? undefined
        : {
            inCdb: sense.fieldPointer.inCdb,
            byte: sense.fieldPointer.byte,
            ...(sense.fieldPointer.bit === undefined ? {} : { bit: sense.fieldPointer.bit }),
          },
  });
}

type DecodedPrin = Pick<CommandResult, 'data' | 'generation'> & { error?: string };

/** Decodes PRIN data-in into the CommandResult oneof; a decode failure is reported, not thrown. */
function decodePrinResult(serviceAction: number, dataIn: Uint8Array): DecodedPrin {
  try {
    switch (serviceAction) {
      case 0: {
        const v = decodeReadKeys(dataIn);
        return {
          generation: v.generation,
          data: {
            $case: 'readKeys',
            value: ReadKeysData.fromPartial({
              generation: v.generation,
              keys: v.keys,
              additionalLength: v.additionalLength,
              truncated: v.truncated,
            }),
          },
        };
      }
      case 1: {
        const v = decodeReadReservation(dataIn);
        return {
          generation: v.generation,
          data: {
            $case: 'readReservation',
            value: ReadReservationData.fromPartial({
              generation: v.generation,
              reserved: v.reservation !== null,
              key: v.reservation?.key ?? 0n,
              type: v.reservation?.type ?? 0,
              scope: v.reservation?.scope ?? 0,
              additionalLength: v.additionalLength,
              truncated: v.truncated,
            }),
          },
        };
      }
      case 2: {
        const v = decodeCapabilities(dataIn);
        return {
          data: {
            $case: 'capabilities',
            value: CapabilitiesData.fromPartial({
              length: v.length,
              rlrC: v.rlrC,
              crh: v.crh,
              sipC: v.sipC,
              atpC: v.atpC,
              ptplC: v.ptplC,
              tmv: v.tmv,
              allowCommands: v.allowCommands,
              ptplA: v.ptplA,
              supportedTypes: v.supportedTypes,
              truncated: v.truncated,
            }),
          },
        };
      }
      case 3: {
        const v = decodeFullStatus(dataIn);
        return {
          generation: v.generation,
          data: {
            $case: 'fullStatus',
            value: FullStatusData.fromPartial({
              generation: v.generation,
              additionalLength: v.additionalLength,
              truncated: v.truncated,
              descriptors: v.descriptors.map((d) => ({
                key: d.reservationKey,
                allTgPt: d.allTgPt,
                reservationHolder: d.holder,
                scope: d.scope,
                type: d.type,
                relativeTargetPort: d.relativeTargetPort,
                transportId: transportIdToProto(d.transportId),
              })),
            }),
          },
        };
      }
      default:
        return { data: undefined };
    }
  } catch (e) {
    return { data: undefined, error: `undecodable PRIN data: ${(e as Error).message}` };
  }
}

/** True for the outcomes that carry the device's own status byte (GOOD … OTHER STATUS). */
export function deviceAnswered(outcome: Outcome): boolean {
  return outcome >= Outcome.OUTCOME_GOOD && outcome <= Outcome.OUTCOME_OTHER_STATUS;
}

/**
 * A device answer → the complete CommandResult: outcome (scsi-pr.md §10.3), status and its name, decoded sense,
 * host/driver status, resid, duration, raw CDB/data-out/data-in, and for a GOOD PRIN the decoded data and
 * PRgeneration. Undecodable PRIN data keeps the outcome and explains itself in `message`.
 */
export function buildCommandResult(
  command: Command,
  response: ScsiResponse,
  options: BuildResultOptions,
): CommandResult {
  const request = options.request ?? toScsiRequest(command);
  const outcome = outcomeOf(response);
  let decoded: DecodedPrin = { data: undefined };
  if (outcome === Outcome.OUTCOME_GOOD && command.kind?.$case === 'prin') {
    const serviceAction = prinServiceActionOf(command.kind.value.action);
    if (serviceAction !== undefined) decoded = decodePrinResult(serviceAction, response.dataIn);
  }
  // Built as a complete literal: no fromPartial copy, and no `{ ...spread, newKey }` (V8 11 takes a slow runtime
  // path for every key added after a spread: ~1.5 µs each, tens of µs for this message).
  return {
    commandId: command.commandId,
    outcome,
    status: response.status,
    // A status byte means something only when the device answered: a TIMEOUT's 0 is not GOOD.
    statusName: deviceAnswered(outcome) ? statusName(response.status) : '',
    sense: decodeSenseToProto(response.sense),
    hostStatus: response.hostStatus,
    driverStatus: response.driverStatus,
    resid: response.resid,
    duration: msToDuration(response.durationMs),
    cdb: Buffer.from(request.cdb),
    dataOut:
      request.dataOut === undefined || request.dataOut.length === 0
        ? Buffer.alloc(0)
        : Buffer.from(request.dataOut),
    dataIn: Buffer.from(response.dataIn),
    agentId: options.agentId,
    path: options.path ?? command.path,
    luId: options.luId ?? '',
    generation: decoded.generation,
    data: decoded.data,
    unitAttentions:
      options.unitAttentions === undefined || options.unitAttentions.length === 0
        ? []
        : options.unitAttentions.map((s) =>
            UnitAttention.fromPartial({ sense: decodeSenseToProto(s) }),
          ),
    errno: 0,
    message: decoded.error ?? '',
    startedAt: options.startedAt,
    idempotencyKey: command.idempotencyKey,
  };
}

function contextFields(command: Command, context: ResultContext): Partial<CommandResult> {
  return {
    commandId: command.commandId,
    agentId: context.agentId,
    path: context.path ?? command.path,
    luId: context.luId ?? '',
    idempotencyKey: command.idempotencyKey,
  };
}

/**
 * Result for a command handed to an agent that vanished before answering: it may or may not have run, and only
 * a fresh PRIN settles it (OUTCOME_UNKNOWN).
 */
export function unknownResult(command: Command, agentId: string, message: string): CommandResult {
  return CommandResult.fromPartial({
    outcome: Outcome.OUTCOME_UNKNOWN,
    message,
    ...contextFields(command, { agentId }),
  });
}

/** Result for a command the agent refused before sending anything (OUTCOME_REFUSED). */
export function refusedResult(
  command: Command,
  context: ResultContext,
  message: string,
): CommandResult {
  return CommandResult.fromPartial({
    outcome: Outcome.OUTCOME_REFUSED,
    message,
    ...contextFields(command, context),
  });
}

/** Result for a command that could not be submitted: open/ioctl errno, vanished node (OUTCOME_OS_ERROR). */
export function osErrorResult(
  command: Command,
  context: ResultContext,
  errno: number,
  message: string,
): CommandResult {
  return CommandResult.fromPartial({
    outcome: Outcome.OUTCOME_OS_ERROR,
    errno,
    message,
    ...contextFields(command, context),
  });
}

/** Result of a dry run: validated and encoded (CDB and data-out shown) but not sent (OUTCOME_DRY_RUN). */
export function dryRunResult(
  command: Command,
  context: ResultContext,
  request?: ScsiRequest,
): CommandResult {
  const sent = request ?? toScsiRequest(command);
  return CommandResult.fromPartial({
    outcome: Outcome.OUTCOME_DRY_RUN,
    cdb: Buffer.from(sent.cdb),
    dataOut: Buffer.from(sent.dataOut ?? new Uint8Array(0)),
    message: 'dry run: validated and encoded, not sent',
    ...contextFields(command, context),
  });
}
