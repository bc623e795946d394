/**
 * PERSISTENT RESERVE OUT (5Fh): CDB and parameter lists (scsi-pr.md §2, §3, §5). The initiator side encodes a
 * typed request; the target side (emulator) decodes CDB and parameter list separately so it can apply SPC's
 * checks in order (§7.1), or both at once with decodeProut.
 */
import {
  byteAt,
  checkBig,
  checkInt,
  concat,
  need,
  readBig,
  readUint,
  writeBig,
  writeUint,
} from './bytes.js';
import { Opcode, ProutSa } from './constants.js';
import { ScsiDecodeError, ScsiEncodeError } from './errors.js';
import { decodeTransportId, encodeTransportId, type TransportId } from './transport-id.js';

/** Length of the basic PROUT parameter list and of the REGISTER AND MOVE header (scsi-pr.md §3, §5). */
export const PROUT_BASIC_LENGTH = 24;

/** Service actions that use the basic parameter list (all but REGISTER AND MOVE). */
export type ProutBasicServiceAction = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 8;

/** A PROUT with the basic parameter list. `specIPt` empty → SPEC_I_PT 0 and a 24-byte list. */
export interface ProutBasic {
  serviceAction: ProutBasicServiceAction;
  scope: number;
  type: number;
  reservationKey: bigint;
  serviceActionKey: bigint;
  specIPt: TransportId[];
  allTgPt: boolean;
  aptpl: boolean;
}

/** A REGISTER AND MOVE (07h). */
export interface ProutMove {
  serviceAction: 7;
  scope: number;
  type: number;
  reservationKey: bigint;
  serviceActionKey: bigint;
  unreg: boolean;
  aptpl: boolean;
  relativeTargetPort: number;
  transportId: TransportId;
}

/** Any PROUT request. */
export type ProutRequest = ProutBasic | ProutMove;

/** Fields of a PROUT CDB. */
export interface ProutCdb {
  serviceAction: number;
  scope: number;
  type: number;
  parameterListLength: number;
  control: number;
}

/** The basic parameter list as sent, including the raw SPEC_I_PT bit and TransportID data length. */
export interface ProutBasicParameters {
  kind: 'basic';
  reservationKey: bigint;
  serviceActionKey: bigint;
  /** Bytes 16–19 (obsolete scope-specific address). */
  scopeSpecificAddress: number;
  specIPtFlag: boolean;
  allTgPt: boolean;
  aptpl: boolean;
  /** Bytes 24–27 when SPEC_I_PT is set, else undefined. */
  transportIdParameterDataLength?: number;
  /** TransportIDs in bytes 28…, empty when SPEC_I_PT is clear. */
  transportIds: TransportId[];
}

/** The REGISTER AND MOVE parameter list as sent. */
export interface ProutMoveParameters {
  kind: 'move';
  reservationKey: bigint;
  serviceActionKey: bigint;
  unreg: boolean;
  aptpl: boolean;
  relativeTargetPort: number;
  transportIdParameterDataLength: number;
  /** Length of the TransportID itself (compare with transportIdParameterDataLength, LIO 26h/00h). */
  transportIdLength: number;
  transportId: TransportId;
}

/**
 * Encodes a PROUT CDB with the given PARAMETER LIST LENGTH (32-bit in bytes 5–8, scsi-pr.md §2). Conformance
 * tests use it to send deliberately wrong lengths.
 */
export function encodeProutCdb(fields: {
  serviceAction: number;
  scope: number;
  type: number;
  parameterListLength: number;
  control?: number;
}): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = Opcode.PERSISTENT_RESERVE_OUT;
  cdb[1] = checkInt(fields.serviceAction, 0, 0x1f, 'serviceAction');
  cdb[2] = (checkInt(fields.scope, 0, 0xf, 'scope') << 4) | checkInt(fields.type, 0, 0xf, 'type');
  writeUint(cdb, 5, 4, checkInt(fields.parameterListLength, 0, 0xffffffff, 'parameterListLength'));
  cdb[9] = checkInt(fields.control ?? 0, 0, 0xff, 'control');
  return cdb;
}

/** Encodes a PROUT request into its 10-byte CDB and parameter list. Throws ScsiEncodeError for invalid fields. */
export function encodeProut(req: ProutRequest): { cdb: Uint8Array; parameters: Uint8Array } {
  const header = new Uint8Array(PROUT_BASIC_LENGTH);
  writeBig(header, 0, 8, checkBig(req.reservationKey, 64, 'reservationKey'));
  writeBig(header, 8, 8, checkBig(req.serviceActionKey, 64, 'serviceActionKey'));
  let parameters: Uint8Array;
  if (req.serviceAction === ProutSa.REGISTER_AND_MOVE) {
    header[17] = (req.unreg ? 0x02 : 0) | (req.aptpl ? 0x01 : 0);
    writeUint(header, 18, 2, checkInt(req.relativeTargetPort, 0, 0xffff, 'relativeTargetPort'));
    const tid = encodeTransportId(req.transportId);
    writeUint(header, 20, 4, tid.length);
    parameters = concat([header, tid]);
  } else {
    const sa: number = req.serviceAction;
    if (![0, 1, 2, 3, 4, 5, 6, 8].includes(sa)) {
      throw new ScsiEncodeError(
        `invalid serviceAction: ${String(sa)} is not a PROUT service action`,
        'serviceAction',
      );
    }
    header[20] =
      (req.specIPt.length > 0 ? 0x08 : 0) | (req.allTgPt ? 0x04 : 0) | (req.aptpl ? 0x01 : 0);
    if (req.specIPt.length === 0) {
      parameters = header;
    } else {
      const tids = concat(req.specIPt.map((t) => encodeTransportId(t)));
      const lengthField = new Uint8Array(4);
      writeUint(lengthField, 0, 4, tids.length);
      parameters = concat([header, lengthField, tids]);
    }
  }
  const cdb = encodeProutCdb({
    serviceAction: req.serviceAction,
    scope: req.scope,
    type: req.type,
    parameterListLength: parameters.length,
  });
  return { cdb, parameters };
}

/** Decodes a PROUT CDB (target side). Throws ScsiDecodeError if it is short or not opcode 5Fh. */
export function decodeProutCdb(cdb: Uint8Array): ProutCdb {
  need(cdb, 0, 10, 'cdb');
  if (cdb[0] !== Opcode.PERSISTENT_RESERVE_OUT) {
    throw new ScsiDecodeError(
      `operation code 0x${(cdb[0] as number).toString(16)} is not 0x5f`,
      'operation code',
      0,
    );
  }
  const b2 = cdb[2] as number;
  return {
    serviceAction: (cdb[1] as number) & 0x1f,
    scope: b2 >> 4,
    type: b2 & 0x0f,
    parameterListLength: readUint(cdb, 5, 4, 'parameter list length'),
    control: cdb[9] as number,
  };
}

function decodeTransportIdList(params: Uint8Array, start: number, end: number): TransportId[] {
  const out: TransportId[] = [];
  let at = start;
  while (at < end) {
    const { transportId, length } = decodeTransportId(params, at, end);
    out.push(transportId);
    at += length;
  }
  return out;
}

/**
 * Decodes a PROUT parameter list as sent for `serviceAction` (07h → move layout, else basic). Trailing bytes are
 * left for the caller to judge against the CDB's length (1Ah/00h). Throws ScsiDecodeError naming field and
 * offset when the list is shorter than its fields or a TransportID is bad.
 */
export function decodeProutParameters(
  serviceAction: number,
  params: Uint8Array,
): ProutBasicParameters | ProutMoveParameters {
  if (params.length < PROUT_BASIC_LENGTH) {
    throw new ScsiDecodeError(
      `parameter list is ${params.length} bytes, at least ${PROUT_BASIC_LENGTH} needed`,
      'parameter list length',
      params.length,
    );
  }
  const reservationKey = readBig(params, 0, 8, 'reservation key');
  const serviceActionKey = readBig(params, 8, 8, 'service action reservation key');
  if (serviceAction === ProutSa.REGISTER_AND_MOVE) {
    const flags = byteAt(params, 17, 'unreg');
    const transportIdParameterDataLength = readUint(
      params,
      20,
      4,
      'transportid parameter data length',
    );
    const end = PROUT_BASIC_LENGTH + transportIdParameterDataLength;
    if (end > params.length) {
      throw new ScsiDecodeError(
        `transportid parameter data length ${transportIdParameterDataLength} exceeds the ${params.length - PROUT_BASIC_LENGTH} bytes after the header`,
        'transportid parameter data length',
        20,
      );
    }
    const { transportId, length } = decodeTransportId(params, PROUT_BASIC_LENGTH, end);
    return {
      kind: 'move',
      reservationKey,
      serviceActionKey,
      unreg: (flags & 0x02) !== 0,
      aptpl: (flags & 0x01) !== 0,
      relativeTargetPort: readUint(params, 18, 2, 'relative target port identifier'),
      transportIdParameterDataLength,
      transportIdLength: length,
      transportId,
    };
  }
  const flags = params[20] as number;
  const specIPtFlag = (flags & 0x08) !== 0;
  const basic: ProutBasicParameters = {
    kind: 'basic',
    reservationKey,
    serviceActionKey,
    scopeSpecificAddress: readUint(params, 16, 4, 'scope-specific address'),
    specIPtFlag,
    allTgPt: (flags & 0x04) !== 0,
    aptpl: (flags & 0x01) !== 0,
    transportIds: [],
  };
  if (!specIPtFlag) return basic;
  const dataLength = readUint(params, 24, 4, 'transportid parameter data length');
  const end = 28 + dataLength;
  if (end > params.length) {
    throw new ScsiDecodeError(
      `transportid parameter data length ${dataLength} exceeds the ${params.length - 28} bytes after it`,
      'transportid parameter data length',
      24,
    );
  }
  basic.transportIdParameterDataLength = dataLength;
  basic.transportIds = decodeTransportIdList(params, 28, end);
  return basic;
}

/**
 * Decodes CDB and parameter list into the request encodeProut would have built (its inverse). Throws
 * ScsiDecodeError for a service action outside 00h–08h, or any problem of the two parts.
 */
export function decodeProut(cdb: Uint8Array, params: Uint8Array): ProutRequest {
  const c = decodeProutCdb(cdb);
  if (c.serviceAction > ProutSa.REPLACE_LOST_RESERVATION) {
    throw new ScsiDecodeError(
      `service action 0x${c.serviceAction.toString(16)} is reserved`,
      'service action',
      1,
    );
  }
  const p = decodeProutParameters(c.serviceAction, params);
  if (p.kind === 'move') {
    return {
      serviceAction: ProutSa.REGISTER_AND_MOVE,
      scope: c.scope,
      type: c.type,
      reservationKey: p.reservationKey,
      serviceActionKey: p.serviceActionKey,
      unreg: p.unreg,
      aptpl: p.aptpl,
      relativeTargetPort: p.relativeTargetPort,
      transportId: p.transportId,
    };
  }
  return {
    serviceAction: c.serviceAction as ProutBasicServiceAction,
    scope: c.scope,
    type: c.type,
    reservationKey: p.reservationKey,
    serviceActionKey: p.serviceActionKey,
    specIPt: p.transportIds,
    allTgPt: p.allTgPt,
    aptpl: p.aptpl,
  };
}
