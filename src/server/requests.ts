import { createHash } from 'node:crypto';
import { Command, PrinCommand, ProutCommand } from '../gen/prfleet/v1/agent.js';
import type {
  ClearRequest,
  CommandOptions,
  PreemptRequest,
  ProutOptions,
  ReadFullStatusRequest,
  ReadKeysRequest,
  ReadReservationRequest,
  RegisterAndMoveRequest,
  RegisterRequest,
  ReleaseRequest,
  ReportCapabilitiesRequest,
  ReserveRequest,
  Target,
} from '../gen/prfleet/v1/control.js';
import { PrinAction, ProutAction } from '../gen/prfleet/v1/scsi.js';
import { CommandValidationError, toScsiRequest } from '../common/command.js';
import { invalidArgument } from '../common/errors.js';
import type { ScsiRequest } from '../scsi/exchange.js';

/** A ControlService request turned into a typed command (path and id still empty). */
export interface CommandSpec {
  /** PRIN or PROUT. */
  readonly mode: 'prin' | 'prout';
  /** Which LU and initiator. */
  readonly target: Target | undefined;
  /** The command (kind only). */
  readonly command: Command;
  /** Requested device timeout. */
  readonly commandTimeout: CommandOptions['commandTimeout'];
  /** PROUT options (idempotency key, precondition, dry run). */
  readonly prout?: ProutOptions;
  /** Command field (`prout.service_action_key`) → request field (`new_key`), for error messages. */
  readonly fieldNames: Readonly<Record<string, string>>;
}

/** Request fields named after the SPC fields they fill, shared by every PROUT RPC. */
const PROUT_FIELDS = {
  'prout.reservation_key': 'key',
  'prout.type': 'type',
  'prout.aptpl': 'aptpl',
  'prout.all_tg_pt': 'all_tg_pt',
  'prout.spec_i_pt_transport_ids': 'spec_i_pt_transport_ids',
  'prout.unreg': 'unreg',
  'prout.relative_target_port': 'relative_target_port',
  'prout.destination': 'destination',
} as const;

function prin(
  action: PrinAction,
  request:
    ReadKeysRequest | ReadReservationRequest | ReportCapabilitiesRequest | ReadFullStatusRequest,
): CommandSpec {
  return {
    mode: 'prin',
    target: request.target,
    command: Command.fromPartial({
      kind: {
        $case: 'prin',
        value: PrinCommand.fromPartial({ action, allocationLength: request.allocationLength }),
      },
    }),
    commandTimeout: request.options?.commandTimeout,
    fieldNames: { 'prin.allocation_length': 'allocation_length' },
  };
}

function prout(
  request: { target: Target | undefined; options: ProutOptions | undefined },
  value: Partial<ProutCommand>,
  serviceActionKeyField: string,
): CommandSpec {
  return {
    mode: 'prout',
    target: request.target,
    command: Command.fromPartial({
      idempotencyKey: request.options?.idempotencyKey ?? '',
      kind: { $case: 'prout', value: ProutCommand.fromPartial(value) },
    }),
    commandTimeout: request.options?.commandTimeout,
    ...(request.options === undefined ? {} : { prout: request.options }),
    fieldNames: { ...PROUT_FIELDS, 'prout.service_action_key': serviceActionKeyField },
  };
}

/** The CommandSpec of each ControlService command RPC. */
export const commandSpecs = {
  readKeys: (r: ReadKeysRequest) => prin(PrinAction.PRIN_ACTION_READ_KEYS, r),
  readReservation: (r: ReadReservationRequest) => prin(PrinAction.PRIN_ACTION_READ_RESERVATION, r),
  reportCapabilities: (r: ReportCapabilitiesRequest) =>
    prin(PrinAction.PRIN_ACTION_REPORT_CAPABILITIES, r),
  readFullStatus: (r: ReadFullStatusRequest) => prin(PrinAction.PRIN_ACTION_READ_FULL_STATUS, r),
  register: (r: RegisterRequest) =>
    prout(
      r,
      {
        action: r.ignoreExistingKey
          ? ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY
          : ProutAction.PROUT_ACTION_REGISTER,
        // SPC-4 5.14.7: REGISTER AND IGNORE EXISTING KEY ignores RESERVATION KEY; send 0 rather than a stale one.
        reservationKey: r.ignoreExistingKey ? 0n : r.key,
        serviceActionKey: r.newKey,
        aptpl: r.aptpl,
        allTgPt: r.allTgPt,
        specIPtTransportIds: r.specIPtTransportIds,
      },
      'new_key',
    ),
  reserve: (r: ReserveRequest) =>
    prout(
      r,
      { action: ProutAction.PROUT_ACTION_RESERVE, reservationKey: r.key, type: r.type },
      'service_action_key',
    ),
  release: (r: ReleaseRequest) =>
    prout(
      r,
      { action: ProutAction.PROUT_ACTION_RELEASE, reservationKey: r.key, type: r.type },
      'service_action_key',
    ),
  clear: (r: ClearRequest) =>
    prout(
      r,
      { action: ProutAction.PROUT_ACTION_CLEAR, reservationKey: r.key },
      'service_action_key',
    ),
  preempt: (r: PreemptRequest) =>
    prout(
      r,
      {
        action: r.abort
          ? ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT
          : ProutAction.PROUT_ACTION_PREEMPT,
        reservationKey: r.key,
        serviceActionKey: r.preemptKey,
        type: r.type,
      },
      'preempt_key',
    ),
  registerAndMove: (r: RegisterAndMoveRequest) =>
    prout(
      r,
      {
        action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
        reservationKey: r.key,
        serviceActionKey: r.destinationKey,
        ...(r.destination === undefined ? {} : { destination: r.destination }),
        relativeTargetPort: r.relativeTargetPort,
        unreg: r.unreg,
        aptpl: r.aptpl,
        type: r.type,
      },
      'destination_key',
    ),
} as const;

/** Maps a Command field path (`prout.destination.iscsi`) to the request's own (`destination.iscsi`). */
export function requestFieldOf(spec: CommandSpec, commandField: string): string {
  for (const [from, to] of Object.entries(spec.fieldNames)) {
    if (
      commandField === from ||
      commandField.startsWith(`${from}.`) ||
      commandField.startsWith(`${from}[`)
    ) {
      return to + commandField.slice(from.length);
    }
  }
  return commandField.replace(/^(prin|prout)\./, '');
}

/**
 * Encodes `command` through the codec (the same code the agent runs), turning CommandValidationError into
 * INVALID_ARGUMENT that names the request field.
 */
export function encodeOrReject(spec: CommandSpec, command: Command): ScsiRequest {
  try {
    return toScsiRequest(command);
  } catch (e) {
    if (e instanceof CommandValidationError)
      throw invalidArgument(requestFieldOf(spec, e.field), e.message);
    throw e;
  }
}

/** Stable fingerprint of what a PROUT does (agent, path, kind), for idempotency-key reuse checks. */
export function fingerprintOf(agentId: string, command: Command): string {
  const bytes = Command.encode(
    Command.fromPartial({ path: command.path, kind: command.kind }),
  ).finish();
  return createHash('sha256').update(agentId).update('\0').update(bytes).digest('hex');
}

/** Longest idempotency key accepted (bytes of UTF-8). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 256;
