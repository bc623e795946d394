import type { Duration } from '../gen/google/protobuf/duration.js';
import type { Command, ProutCommand } from '../gen/prfleet/v1/agent.js';
import {
  PrinAction,
  ProutAction,
  PrType as ProtoPrType,
  TransportId as ProtoTransportId,
} from '../gen/prfleet/v1/scsi.js';
import {
  encodeInquiry,
  encodePrin,
  encodeProut,
  encodeReadElementStatus,
  encodeReportLuns,
  encodeRequestSense,
  encodeTestUnitReady,
  formatTransportId,
  iscsiNameError,
  MAX_KEY,
  ScsiEncodeError,
  type ProutRequest,
  type ScsiRequest,
  type TransportId,
} from '../scsi/index.js';

/** A typed command that cannot become a CDB: the field (proto path, e.g. `prout.action`) and why. */
export class CommandValidationError extends Error {
  override readonly name = 'CommandValidationError';
  constructor(
    message: string,
    /** Proto field path of the bad input, e.g. `prout.destination`. */
    readonly field: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Defaults applied where a Command leaves a field at 0/unset. */
export interface CommandDefaults {
  /** Device command timeout when Command.timeout is unset or zero. @default 60000 (sg3_utils DEF_PT_TIMEOUT) */
  readonly timeoutMs?: number;
  /** PRIN allocation length when PrinCommand.allocation_length is 0. @default 8192 */
  readonly prinAllocationLength?: number;
}

/** sg3_utils' DEF_PT_TIMEOUT (60 s): what sg_persist uses when no timeout is given. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** PRIN allocation length when the command gives 0 (agent.proto PrinCommand). */
export const DEFAULT_PRIN_ALLOCATION_LENGTH = 8192;
/** INQUIRY allocation length when the command gives 0 (agent.proto InquiryCommand). */
export const DEFAULT_INQUIRY_ALLOCATION_LENGTH = 255;
/** REQUEST SENSE allocation length when the command gives 0 (SPC-4 recommends 252). */
export const DEFAULT_REQUEST_SENSE_ALLOCATION_LENGTH = 252;
/** REPORT LUNS allocation length when the command gives 0 (agent.proto ReportLunsCommand). */
export const DEFAULT_REPORT_LUNS_ALLOCATION_LENGTH = 8192;
/** READ ELEMENT STATUS allocation length when the command gives 0: a SuperLoader's whole report fits many times. */
export const DEFAULT_ELEMENT_STATUS_ALLOCATION_LENGTH = 65536;
/** SG_IO's timeout field is an unsigned 32-bit count of milliseconds (scsi-pr.md §10.1). */
const MAX_TIMEOUT_MS = 0xffff_ffff;

/** SPC service action code of a proto PrinAction (proto numbers are SPC + 1). */
export function prinServiceActionOf(action: PrinAction): number | undefined {
  switch (action) {
    case PrinAction.PRIN_ACTION_READ_KEYS:
    case PrinAction.PRIN_ACTION_READ_RESERVATION:
    case PrinAction.PRIN_ACTION_REPORT_CAPABILITIES:
    case PrinAction.PRIN_ACTION_READ_FULL_STATUS:
      return action - 1;
    default:
      return undefined;
  }
}

/** SPC service action code of a proto ProutAction (proto numbers are SPC + 1). */
export function proutServiceActionOf(action: ProutAction): number | undefined {
  switch (action) {
    case ProutAction.PROUT_ACTION_REGISTER:
    case ProutAction.PROUT_ACTION_RESERVE:
    case ProutAction.PROUT_ACTION_RELEASE:
    case ProutAction.PROUT_ACTION_CLEAR:
    case ProutAction.PROUT_ACTION_PREEMPT:
    case ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT:
    case ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY:
    case ProutAction.PROUT_ACTION_REGISTER_AND_MOVE:
      return action - 1;
    default:
      return undefined;
  }
}

const VALID_TYPES: ReadonlySet<number> = new Set([
  ProtoPrType.PR_TYPE_WRITE_EXCLUSIVE,
  ProtoPrType.PR_TYPE_EXCLUSIVE_ACCESS,
  ProtoPrType.PR_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
  ProtoPrType.PR_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
  ProtoPrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS,
  ProtoPrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
]);

const PROUT_ACTION_WORDS: Record<number, string> = {
  [ProutAction.PROUT_ACTION_REGISTER]: 'REGISTER',
  [ProutAction.PROUT_ACTION_RESERVE]: 'RESERVE',
  [ProutAction.PROUT_ACTION_RELEASE]: 'RELEASE',
  [ProutAction.PROUT_ACTION_CLEAR]: 'CLEAR',
  [ProutAction.PROUT_ACTION_PREEMPT]: 'PREEMPT',
  [ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT]: 'PREEMPT AND ABORT',
  [ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY]: 'REGISTER AND IGNORE EXISTING KEY',
  [ProutAction.PROUT_ACTION_REGISTER_AND_MOVE]: 'REGISTER AND MOVE',
};

const PRIN_ACTION_WORDS: Record<number, string> = {
  [PrinAction.PRIN_ACTION_READ_KEYS]: 'READ KEYS',
  [PrinAction.PRIN_ACTION_READ_RESERVATION]: 'READ RESERVATION',
  [PrinAction.PRIN_ACTION_REPORT_CAPABILITIES]: 'REPORT CAPABILITIES',
  [PrinAction.PRIN_ACTION_READ_FULL_STATUS]: 'READ FULL STATUS',
};

/** Words for a PROUT action as SPC names it ("REGISTER AND MOVE"); unknown numbers print as `action <n>`. */
export function proutActionWords(action: ProutAction): string {
  return PROUT_ACTION_WORDS[action] ?? `action ${action}`;
}

/** Words for a PRIN action as SPC names it ("READ KEYS"); unknown numbers print as `action <n>`. */
export function prinActionWords(action: PrinAction): string {
  return PRIN_ACTION_WORDS[action] ?? `action ${action}`;
}

/** One-line description of a command for logs and messages, e.g. `PROUT RESERVE` or `INQUIRY VPD 0x83`. */
export function describeCommand(command: Command): string {
  const kind = command.kind;
  switch (kind?.$case) {
    case 'prin':
      return `PRIN ${prinActionWords(kind.value.action)}`;
    case 'prout':
      return `PROUT ${proutActionWords(kind.value.action)}`;
    case 'inquiry':
      return kind.value.evpd
        ? `INQUIRY VPD 0x${kind.value.pageCode.toString(16).padStart(2, '0')}`
        : 'INQUIRY';
    case 'testUnitReady':
      return 'TEST UNIT READY';
    case 'requestSense':
      return 'REQUEST SENSE';
    case 'reportLuns':
      return 'REPORT LUNS';
    case 'readElementStatus':
      return 'READ ELEMENT STATUS';
    case 'luReset':
      return 'LOGICAL UNIT RESET';
    case undefined:
      return 'empty command';
  }
}

/** True for PERSISTENT RESERVE OUT, the only kind that changes device state. */
export function isProut(command: Command): boolean {
  return command.kind?.$case === 'prout';
}

/** Milliseconds in a proto Duration (rounded up so a 0.5 ms budget is not "no timeout"). */
export function durationToMs(duration: Duration): number {
  return Number(duration.seconds) * 1000 + Math.ceil(duration.nanos / 1_000_000);
}

/** A proto Duration of `ms` milliseconds. */
export function msToDuration(ms: number): Duration {
  const whole = Math.floor(ms);
  return {
    seconds: BigInt(Math.floor(whole / 1000)),
    nanos: (whole % 1000) * 1_000_000 + Math.round((ms - whole) * 1_000_000),
  };
}

/**
 * Proto TransportId → codec TransportId. Throws CommandValidationError naming `field` when the oneof is empty,
 * an iSCSI name is missing or an ISID is not 12 hex digits.
 */
export function transportIdFromProto(id: ProtoTransportId | undefined, field: string): TransportId {
  const value = id?.id;
  switch (value?.$case) {
    case 'fc':
      return { protocol: 'fc', wwpn: checkUint64(value.value.wwpn, `${field}.fc.wwpn`) };
    case 'sas':
      return {
        protocol: 'sas',
        sasAddress: checkUint64(value.value.sasAddress, `${field}.sas.sas_address`),
      };
    case 'iscsi': {
      const { name, isid } = value.value;
      if (name.length === 0)
        throw new CommandValidationError('iscsi name is empty', `${field}.iscsi.name`);
      // Checked here, where the request field is known (the codec would name only its own `name`).
      const problem = iscsiNameError(name);
      if (problem !== undefined)
        throw new CommandValidationError(
          `invalid iscsi name: ${JSON.stringify(name.slice(0, 64))} ${problem}`,
          `${field}.iscsi.name`,
        );
      if (isid.length === 0) return { protocol: 'iscsi', name };
      if (!/^[0-9a-fA-F]{12}$/.test(isid)) {
        throw new CommandValidationError(
          `invalid isid: ${JSON.stringify(isid)} is not 12 hex digits`,
          `${field}.iscsi.isid`,
        );
      }
      return { protocol: 'iscsi', name, isid: isid.toLowerCase() };
    }
    case 'raw':
      if (value.value.length < 24) {
        throw new CommandValidationError(
          `raw TransportID is ${value.value.length} bytes, SPC needs at least 24`,
          `${field}.raw`,
        );
      }
      return { protocol: 'raw', bytes: new Uint8Array(value.value) };
    case undefined:
      throw new CommandValidationError('TransportID is empty (set fc, sas, iscsi or raw)', field);
  }
}

/** Codec TransportId → proto TransportId, with `display` filled in (`sas:0x5000c50012345678`). */
export function transportIdToProto(id: TransportId): ProtoTransportId {
  const display = formatTransportId(id);
  switch (id.protocol) {
    case 'fc':
      return ProtoTransportId.fromPartial({
        id: { $case: 'fc', value: { wwpn: id.wwpn } },
        display,
      });
    case 'sas':
      return ProtoTransportId.fromPartial({
        id: { $case: 'sas', value: { sasAddress: id.sasAddress } },
        display,
      });
    case 'iscsi':
      return ProtoTransportId.fromPartial({
        id: { $case: 'iscsi', value: { name: id.name, isid: id.isid ?? '' } },
        display,
      });
    case 'raw':
      return ProtoTransportId.fromPartial({
        id: { $case: 'raw', value: Buffer.from(id.bytes) },
        display,
      });
  }
}

function checkUint64(value: bigint, field: string): bigint {
  if (value < 0n || value > MAX_KEY) {
    throw new CommandValidationError(`invalid value: ${value} is not a uint64`, field);
  }
  return value;
}

function checkRange(value: number, min: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new CommandValidationError(`${field} ${value} is out of range ${min}–${max}`, field);
  }
  return value;
}

function timeoutOf(command: Command, defaults: CommandDefaults | undefined): number {
  const fallback = defaults?.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  if (command.timeout === undefined) return fallback;
  const { seconds, nanos } = command.timeout;
  if (seconds < 0n || nanos < 0) {
    throw new CommandValidationError(`timeout ${seconds}s ${nanos}ns is negative`, 'timeout');
  }
  const ms = durationToMs(command.timeout);
  if (ms === 0) return fallback;
  if (ms > MAX_TIMEOUT_MS) {
    throw new CommandValidationError(`timeout ${ms} ms exceeds ${MAX_TIMEOUT_MS} ms`, 'timeout');
  }
  return ms;
}

/** The service actions that take each PROUT field; anything else with the field set is refused. */
const REGISTER_ACTIONS: ReadonlySet<ProutAction> = new Set([
  ProutAction.PROUT_ACTION_REGISTER,
  ProutAction.PROUT_ACTION_REGISTER_AND_IGNORE_EXISTING_KEY,
]);
const TYPED_ACTIONS: ReadonlySet<ProutAction> = new Set([
  ProutAction.PROUT_ACTION_RESERVE,
  ProutAction.PROUT_ACTION_RELEASE,
]);
/**
 * PREEMPT takes a TYPE only when it preempts the holder; 0 is allowed (then only registrations go). REGISTER AND
 * MOVE's TYPE is informational (devices move the reservation with its own type), so it may be 0 too.
 */
const OPTIONALLY_TYPED_ACTIONS: ReadonlySet<ProutAction> = new Set([
  ProutAction.PROUT_ACTION_PREEMPT,
  ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT,
  ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
]);
/** Actions sent by a registered nexus: RESERVATION KEY 0 can only ever answer RESERVATION CONFLICT. */
const REGISTERED_ACTIONS: ReadonlySet<ProutAction> = new Set([
  ProutAction.PROUT_ACTION_RESERVE,
  ProutAction.PROUT_ACTION_RELEASE,
  ProutAction.PROUT_ACTION_CLEAR,
  ProutAction.PROUT_ACTION_PREEMPT,
  ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT,
  ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
]);

/** The PROUT TYPE field: required by RESERVE/RELEASE, optional for PREEMPT and REGISTER AND MOVE, else refused. */
function proutTypeOf(prout: ProutCommand, words: string): number {
  const action = prout.action;
  if (prout.type === ProtoPrType.PR_TYPE_UNSPECIFIED) {
    if (TYPED_ACTIONS.has(action)) {
      throw new CommandValidationError(`${words} needs a reservation type`, 'prout.type');
    }
    return 0;
  }
  if (!VALID_TYPES.has(prout.type)) {
    throw new CommandValidationError(
      `prout type ${prout.type} is not a reservation type`,
      'prout.type',
    );
  }
  if (!TYPED_ACTIONS.has(action) && !OPTIONALLY_TYPED_ACTIONS.has(action)) {
    throw new CommandValidationError(`${words} takes no type`, 'prout.type');
  }
  return prout.type;
}

/** REGISTER AND MOVE's own parameter list: destination key, initiator port and relative target port. */
function registerAndMoveRequestOf(
  prout: ProutCommand,
  fields: { scope: number; type: number; reservationKey: bigint; serviceActionKey: bigint },
): ProutRequest {
  if (fields.serviceActionKey === 0n) {
    throw new CommandValidationError(
      'REGISTER AND MOVE needs the destination key',
      'prout.service_action_key',
    );
  }
  if (prout.destination === undefined) {
    throw new CommandValidationError(
      'REGISTER AND MOVE needs a destination initiator port',
      'prout.destination',
    );
  }
  const relativeTargetPort = checkRange(
    prout.relativeTargetPort,
    1,
    0xffff,
    'prout.relative_target_port',
  );
  return {
    serviceAction: 7,
    ...fields,
    unreg: prout.unreg,
    aptpl: prout.aptpl,
    relativeTargetPort,
    transportId: transportIdFromProto(prout.destination, 'prout.destination'),
  };
}

/** Typed PROUT → codec request; throws CommandValidationError naming the `prout.*` field. */
export function proutRequestOf(prout: ProutCommand): ProutRequest {
  const serviceAction = proutServiceActionOf(prout.action);
  if (serviceAction === undefined) {
    throw new CommandValidationError(
      prout.action === ProutAction.PROUT_ACTION_UNSPECIFIED
        ? 'prout action is unspecified'
        : `prout action ${prout.action} is unknown`,
      'prout.action',
    );
  }
  const action = prout.action;
  const words = proutActionWords(action);
  const reservationKey = checkUint64(prout.reservationKey, 'prout.reservation_key');
  const serviceActionKey = checkUint64(prout.serviceActionKey, 'prout.service_action_key');
  const scope = checkRange(prout.scope, 0, 15, 'prout.scope');

  const type = proutTypeOf(prout, words);
  if (REGISTERED_ACTIONS.has(action) && reservationKey === 0n) {
    throw new CommandValidationError(
      `${words} needs the caller's registered reservation key`,
      'prout.reservation_key',
    );
  }
  if (prout.allTgPt && !REGISTER_ACTIONS.has(action)) {
    throw new CommandValidationError(`${words} takes no ALL_TG_PT`, 'prout.all_tg_pt');
  }
  if (prout.specIPtTransportIds.length > 0 && !REGISTER_ACTIONS.has(action)) {
    throw new CommandValidationError(
      `${words} takes no SPEC_I_PT TransportIDs`,
      'prout.spec_i_pt_transport_ids',
    );
  }

  if (action === ProutAction.PROUT_ACTION_REGISTER_AND_MOVE) {
    return registerAndMoveRequestOf(prout, { scope, type, reservationKey, serviceActionKey });
  }
  if (prout.unreg) throw new CommandValidationError(`${words} takes no UNREG`, 'prout.unreg');
  if (prout.destination !== undefined) {
    throw new CommandValidationError(`${words} takes no destination`, 'prout.destination');
  }
  if (prout.relativeTargetPort !== 0) {
    throw new CommandValidationError(
      `${words} takes no relative target port`,
      'prout.relative_target_port',
    );
  }
  return {
    serviceAction: serviceAction as 0 | 1 | 2 | 3 | 4 | 5 | 6,
    scope,
    type,
    reservationKey,
    serviceActionKey,
    specIPt: prout.specIPtTransportIds.map((id, i) =>
      transportIdFromProto(id, `prout.spec_i_pt_transport_ids[${i}]`),
    ),
    allTgPt: prout.allTgPt,
    aptpl: prout.aptpl,
  };
}

/**
 * Typed proto Command → the bytes to send (CDB, data-out, data-in length, timeout) through the codec. Only the
 * allow-listed kinds exist (PRIN, PROUT, INQUIRY, TEST UNIT READY, REQUEST SENSE, REPORT LUNS); there is no raw
 * CDB. Throws CommandValidationError (with the proto `field`) for bad input; nothing else.
 */
export function toScsiRequest(command: Command, defaults?: CommandDefaults): ScsiRequest {
  const timeoutMs = timeoutOf(command, defaults);
  const kind = command.kind;
  try {
    switch (kind?.$case) {
      case 'prin':
        return prinRequest(kind.value, timeoutMs, defaults);
      case 'prout': {
        const { cdb, parameters } = encodeProut(proutRequestOf(kind.value));
        return { cdb, dataOut: parameters, dataInLength: 0, timeoutMs };
      }
      case 'inquiry':
        return inquiryRequest(kind.value, timeoutMs);
      case 'testUnitReady':
        return { cdb: encodeTestUnitReady(), dataInLength: 0, timeoutMs };
      case 'luReset':
        // A task management function, not a CDB: the transport issues its reset call.
        return { cdb: new Uint8Array(0), dataInLength: 0, timeoutMs, reset: 'logical-unit' };
      case 'requestSense': {
        const allocationLength =
          kind.value.allocationLength === 0
            ? DEFAULT_REQUEST_SENSE_ALLOCATION_LENGTH
            : checkRange(kind.value.allocationLength, 1, 0xff, 'request_sense.allocation_length');
        return {
          cdb: encodeRequestSense(allocationLength),
          dataInLength: allocationLength,
          timeoutMs,
        };
      }
      case 'reportLuns':
        return reportLunsRequest(kind.value, timeoutMs);
      case 'readElementStatus':
        return readElementStatusRequest(kind.value, timeoutMs);
      case undefined:
        throw new CommandValidationError('command has no kind (prin, prout, inquiry, …)', 'kind');
    }
  } catch (e) {
    // The codec's own range checks name its field; re-raise them under the proto path.
    if (e instanceof ScsiEncodeError) {
      throw new CommandValidationError(e.message, `${kind?.$case ?? 'kind'}.${e.field}`, {
        cause: e,
      });
    }
    throw e;
  }
}

/** The kind of each Command, as its message type. */
type KindValue<K extends NonNullable<Command['kind']>['$case']> = Extract<
  NonNullable<Command['kind']>,
  { $case: K }
>['value'];

function prinRequest(
  prin: KindValue<'prin'>,
  timeoutMs: number,
  defaults: CommandDefaults | undefined,
): ScsiRequest {
  const serviceAction = prinServiceActionOf(prin.action);
  if (serviceAction === undefined) {
    throw new CommandValidationError(
      prin.action === PrinAction.PRIN_ACTION_UNSPECIFIED
        ? 'prin action is unspecified'
        : `prin action ${prin.action} is unknown`,
      'prin.action',
    );
  }
  const allocationLength =
    prin.allocationLength === 0
      ? (defaults?.prinAllocationLength ?? DEFAULT_PRIN_ALLOCATION_LENGTH)
      : checkRange(prin.allocationLength, 1, 0xffff, 'prin.allocation_length');
  return {
    cdb: encodePrin(serviceAction, allocationLength),
    dataInLength: allocationLength,
    timeoutMs,
  };
}

function inquiryRequest(inquiry: KindValue<'inquiry'>, timeoutMs: number): ScsiRequest {
  const { evpd } = inquiry;
  const pageCode = checkRange(inquiry.pageCode, 0, 0xff, 'inquiry.page_code');
  if (!evpd && pageCode !== 0) {
    // SPC-4 6.6.1: PAGE CODE must be zero when EVPD is zero.
    throw new CommandValidationError('inquiry page_code needs evpd', 'inquiry.page_code');
  }
  const allocationLength =
    inquiry.allocationLength === 0
      ? DEFAULT_INQUIRY_ALLOCATION_LENGTH
      : checkRange(inquiry.allocationLength, 1, 0xffff, 'inquiry.allocation_length');
  return {
    cdb: encodeInquiry({ evpd, pageCode, allocationLength }),
    dataInLength: allocationLength,
    timeoutMs,
  };
}

function reportLunsRequest(reportLuns: KindValue<'reportLuns'>, timeoutMs: number): ScsiRequest {
  const selectReport = checkRange(reportLuns.selectReport, 0, 0xff, 'report_luns.select_report');
  const allocationLength =
    reportLuns.allocationLength === 0
      ? DEFAULT_REPORT_LUNS_ALLOCATION_LENGTH
      : checkRange(reportLuns.allocationLength, 1, 0xffff_ffff, 'report_luns.allocation_length');
  return {
    cdb: encodeReportLuns(selectReport, allocationLength),
    dataInLength: allocationLength,
    timeoutMs,
  };
}

function readElementStatusRequest(
  v: KindValue<'readElementStatus'>,
  timeoutMs: number,
): ScsiRequest {
  const allocationLength =
    v.allocationLength === 0
      ? DEFAULT_ELEMENT_STATUS_ALLOCATION_LENGTH
      : checkRange(v.allocationLength, 1, 0xff_ffff, 'read_element_status.allocation_length');
  return {
    cdb: encodeReadElementStatus({
      elementType: checkRange(v.elementType, 0, 4, 'read_element_status.element_type'),
      startingElement: checkRange(
        v.startingElement,
        0,
        0xffff,
        'read_element_status.starting_element',
      ),
      numberOfElements:
        v.numberOfElements === 0
          ? 0xffff
          : checkRange(v.numberOfElements, 1, 0xffff, 'read_element_status.number_of_elements'),
      voltag: v.voltag,
      dvcid: v.dvcid,
      allocationLength,
    }),
    dataInLength: allocationLength,
    timeoutMs,
  };
}
