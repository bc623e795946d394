/**
 * PERSISTENT RESERVE IN (5Eh): CDB and the four data formats (scsi-pr.md §8). Encoders (device side) produce the
 * FULL data; the caller truncates it to the allocation length. Decoders accept truncated data: ADDITIONAL LENGTH
 * always states the full size, and `truncated` is set when fewer than 8 + ADDITIONAL LENGTH bytes arrived (§8.2).
 */
import {
  checkBig,
  checkInt,
  concat,
  need,
  readBig,
  readUint,
  writeBig,
  writeUint,
} from './bytes.js';
import { Opcode, PrinSa } from './constants.js';
import { ScsiDecodeError } from './errors.js';
import { decodeTransportId, encodeTransportId, type TransportId } from './transport-id.js';

/** Size of the PRGENERATION + ADDITIONAL LENGTH header of READ KEYS, READ RESERVATION and READ FULL STATUS. */
export const PRIN_HEADER_LENGTH = 8;

/** Encodes a 10-byte PRIN CDB: service action 0–1Fh, allocation length 0–65535 (bytes 7–8). */
export function encodePrin(
  serviceAction: number,
  allocationLength: number,
  control = 0,
): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = Opcode.PERSISTENT_RESERVE_IN;
  cdb[1] = checkInt(serviceAction, 0, 0x1f, 'serviceAction');
  writeUint(cdb, 7, 2, checkInt(allocationLength, 0, 0xffff, 'allocationLength'));
  cdb[9] = checkInt(control, 0, 0xff, 'control');
  return cdb;
}

/** Decodes a PRIN CDB (target side). Throws ScsiDecodeError if it is short or not opcode 5Eh. */
export function decodePrinCdb(cdb: Uint8Array): {
  serviceAction: number;
  allocationLength: number;
  control: number;
} {
  need(cdb, 0, 10, 'cdb');
  if (cdb[0] !== Opcode.PERSISTENT_RESERVE_IN) {
    throw new ScsiDecodeError(
      `operation code 0x${(cdb[0] as number).toString(16)} is not 0x5e`,
      'operation code',
      0,
    );
  }
  return {
    serviceAction: (cdb[1] as number) & 0x1f,
    allocationLength: readUint(cdb, 7, 2, 'allocation length'),
    control: cdb[9] as number,
  };
}

function header(generation: number, additionalLength: number): Uint8Array {
  const out = new Uint8Array(PRIN_HEADER_LENGTH);
  writeUint(out, 0, 4, checkInt(generation, 0, 0xffffffff, 'generation'));
  writeUint(out, 4, 4, checkInt(additionalLength, 0, 0xffffffff, 'additionalLength'));
  return out;
}

function readHeader(bytes: Uint8Array): {
  generation: number;
  additionalLength: number;
  end: number;
  truncated: boolean;
} {
  if (bytes.length < PRIN_HEADER_LENGTH) {
    throw new ScsiDecodeError(
      `prin data is ${bytes.length} bytes, the header needs ${PRIN_HEADER_LENGTH}`,
      bytes.length < 4 ? 'prgeneration' : 'additional length',
      bytes.length < 4 ? 0 : 4,
    );
  }
  const generation = readUint(bytes, 0, 4, 'prgeneration');
  const additionalLength = readUint(bytes, 4, 4, 'additional length');
  const full = PRIN_HEADER_LENGTH + additionalLength;
  // Bytes beyond the announced length are not part of the data (a caller that ignored resid).
  return {
    generation,
    additionalLength,
    end: Math.min(full, bytes.length),
    truncated: bytes.length < full,
  };
}

/** READ KEYS data: one key per registered I_T nexus. */
export interface ReadKeys {
  generation: number;
  additionalLength: number;
  keys: bigint[];
  truncated: boolean;
}

/** Encodes READ KEYS data (full length). */
export function encodeReadKeys(data: { generation: number; keys: readonly bigint[] }): Uint8Array {
  const body = new Uint8Array(8 * data.keys.length);
  data.keys.forEach((k, i) => writeBig(body, 8 * i, 8, checkBig(k, 64, `keys[${i}]`)));
  return concat([header(data.generation, body.length), body]);
}

/** Decodes READ KEYS data; keeps only whole keys when truncated. ADDITIONAL LENGTH must be a multiple of 8. */
export function decodeReadKeys(bytes: Uint8Array): ReadKeys {
  const h = readHeader(bytes);
  if (h.additionalLength % 8 !== 0) {
    throw new ScsiDecodeError(
      `additional length ${h.additionalLength} is not a multiple of 8`,
      'additional length',
      4,
    );
  }
  const keys: bigint[] = [];
  for (let at = PRIN_HEADER_LENGTH; at + 8 <= h.end; at += 8)
    keys.push(readBig(bytes, at, 8, 'reservation key'));
  return {
    generation: h.generation,
    additionalLength: h.additionalLength,
    keys,
    truncated: h.truncated,
  };
}

/** The reservation reported by READ RESERVATION (key 0 for all-registrants types). */
export interface ReservationInfo {
  key: bigint;
  scope: number;
  type: number;
}

/** READ RESERVATION data; `reservation` is null when none exists (or the data was cut before it). */
export interface ReadReservation {
  generation: number;
  additionalLength: number;
  reservation: ReservationInfo | null;
  truncated: boolean;
}

/** Length of the READ RESERVATION descriptor (scsi-pr.md §8.4). */
export const RESERVATION_DESCRIPTOR_LENGTH = 16;

/** Encodes READ RESERVATION data: ADDITIONAL LENGTH 0 (no reservation) or 16. */
export function encodeReadReservation(data: {
  generation: number;
  reservation: ReservationInfo | null;
}): Uint8Array {
  if (data.reservation === null) return header(data.generation, 0);
  const body = new Uint8Array(RESERVATION_DESCRIPTOR_LENGTH);
  writeBig(body, 0, 8, checkBig(data.reservation.key, 64, 'key'));
  body[13] =
    (checkInt(data.reservation.scope, 0, 0xf, 'scope') << 4) |
    checkInt(data.reservation.type, 0, 0xf, 'type');
  return concat([header(data.generation, body.length), body]);
}

/** Decodes READ RESERVATION data. ADDITIONAL LENGTH must be 0 or at least 16. */
export function decodeReadReservation(bytes: Uint8Array): ReadReservation {
  const h = readHeader(bytes);
  if (h.additionalLength !== 0 && h.additionalLength < RESERVATION_DESCRIPTOR_LENGTH) {
    throw new ScsiDecodeError(
      `additional length ${h.additionalLength} is neither 0 nor 16`,
      'additional length',
      4,
    );
  }
  let reservation: ReservationInfo | null = null;
  if (h.additionalLength !== 0 && h.end >= PRIN_HEADER_LENGTH + RESERVATION_DESCRIPTOR_LENGTH) {
    const scopeType = bytes[21] as number;
    reservation = {
      key: readBig(bytes, 8, 8, 'reservation key'),
      scope: scopeType >> 4,
      type: scopeType & 0x0f,
    };
  }
  return {
    generation: h.generation,
    additionalLength: h.additionalLength,
    reservation,
    truncated: h.truncated,
  };
}

/** REPORT CAPABILITIES data, every bit (scsi-pr.md §8.5). `supportedTypes` lists the set bits of the type mask. */
export interface Capabilities {
  length: number;
  rlrC: boolean;
  crh: boolean;
  sipC: boolean;
  atpC: boolean;
  ptplC: boolean;
  tmv: boolean;
  allowCommands: number;
  ptplA: boolean;
  supportedTypes: number[];
  truncated: boolean;
}

/** Length of REPORT CAPABILITIES data. */
export const CAPABILITIES_LENGTH = 8;

/** Encodes REPORT CAPABILITIES data (8 bytes). Type mask bit n of bytes 4–5 (little end first) = type n. */
export function encodeCapabilities(c: Omit<Capabilities, 'length' | 'truncated'>): Uint8Array {
  const out = new Uint8Array(CAPABILITIES_LENGTH);
  writeUint(out, 0, 2, CAPABILITIES_LENGTH);
  out[2] =
    (c.rlrC ? 0x80 : 0) |
    (c.crh ? 0x10 : 0) |
    (c.sipC ? 0x08 : 0) |
    (c.atpC ? 0x04 : 0) |
    (c.ptplC ? 0x01 : 0);
  out[3] =
    (c.tmv ? 0x80 : 0) |
    (checkInt(c.allowCommands, 0, 7, 'allowCommands') << 4) |
    (c.ptplA ? 0x01 : 0);
  let mask = 0;
  for (const t of c.supportedTypes) mask |= 1 << checkInt(t, 0, 15, 'supportedTypes');
  out[4] = mask & 0xff;
  out[5] = mask >> 8;
  return out;
}

/** Decodes REPORT CAPABILITIES data; bytes past what arrived read as 0 and set `truncated`. */
export function decodeCapabilities(bytes: Uint8Array): Capabilities {
  if (bytes.length < 2) {
    throw new ScsiDecodeError(
      `capabilities data is ${bytes.length} bytes, the length field needs 2`,
      'length',
      0,
    );
  }
  const length = readUint(bytes, 0, 2, 'length');
  const end = Math.min(length, bytes.length);
  const at = (i: number): number => (i < end ? (bytes[i] as number) : 0);
  const b2 = at(2);
  const b3 = at(3);
  const mask = at(4) | (at(5) << 8);
  const supportedTypes: number[] = [];
  for (let t = 0; t < 16; t++) if (mask & (1 << t)) supportedTypes.push(t);
  return {
    length,
    rlrC: (b2 & 0x80) !== 0,
    crh: (b2 & 0x10) !== 0,
    sipC: (b2 & 0x08) !== 0,
    atpC: (b2 & 0x04) !== 0,
    ptplC: (b2 & 0x01) !== 0,
    tmv: (b3 & 0x80) !== 0,
    allowCommands: (b3 >> 4) & 0x07,
    ptplA: (b3 & 0x01) !== 0,
    supportedTypes,
    truncated: bytes.length < length,
  };
}

/** One READ FULL STATUS descriptor: one registered I_T nexus (scope/type meaningful when `holder`). */
export interface FullStatusDescriptor {
  reservationKey: bigint;
  allTgPt: boolean;
  holder: boolean;
  scope: number;
  type: number;
  relativeTargetPort: number;
  transportId: TransportId;
}

/** READ FULL STATUS data; when truncated, only the descriptors that arrived whole. */
export interface FullStatus {
  generation: number;
  additionalLength: number;
  descriptors: FullStatusDescriptor[];
  truncated: boolean;
}

/** Fixed part of a READ FULL STATUS descriptor, before its TransportID. */
export const FULL_STATUS_DESCRIPTOR_HEADER_LENGTH = 24;

/** Encodes one READ FULL STATUS descriptor with its TransportID. */
export function encodeFullStatusDescriptor(d: FullStatusDescriptor): Uint8Array {
  const tid = encodeTransportId(d.transportId);
  const out = new Uint8Array(FULL_STATUS_DESCRIPTOR_HEADER_LENGTH + tid.length);
  writeBig(out, 0, 8, checkBig(d.reservationKey, 64, 'reservationKey'));
  out[12] = (d.allTgPt ? 0x02 : 0) | (d.holder ? 0x01 : 0);
  out[13] = (checkInt(d.scope, 0, 0xf, 'scope') << 4) | checkInt(d.type, 0, 0xf, 'type');
  writeUint(out, 18, 2, checkInt(d.relativeTargetPort, 0, 0xffff, 'relativeTargetPort'));
  writeUint(out, 20, 4, tid.length);
  out.set(tid, FULL_STATUS_DESCRIPTOR_HEADER_LENGTH);
  return out;
}

/** Encodes READ FULL STATUS data (full length). */
export function encodeFullStatus(data: {
  generation: number;
  descriptors: readonly FullStatusDescriptor[];
}): Uint8Array {
  const body = concat(data.descriptors.map((d) => encodeFullStatusDescriptor(d)));
  return concat([header(data.generation, body.length), body]);
}

/**
 * Decodes READ FULL STATUS data. A descriptor cut by the allocation length ends the list (`truncated`); one that
 * overruns ADDITIONAL LENGTH, or a bad TransportID, throws ScsiDecodeError.
 */
export function decodeFullStatus(bytes: Uint8Array): FullStatus {
  const h = readHeader(bytes);
  const announcedEnd = PRIN_HEADER_LENGTH + h.additionalLength;
  const descriptors: FullStatusDescriptor[] = [];
  let at = PRIN_HEADER_LENGTH;
  while (at < announcedEnd) {
    if (at + FULL_STATUS_DESCRIPTOR_HEADER_LENGTH > announcedEnd) {
      throw new ScsiDecodeError(
        `descriptor at byte ${at} needs ${FULL_STATUS_DESCRIPTOR_HEADER_LENGTH} bytes, additional length leaves ${announcedEnd - at}`,
        'additional length',
        4,
      );
    }
    if (at + FULL_STATUS_DESCRIPTOR_HEADER_LENGTH > bytes.length) break; // cut by the allocation length
    const descriptorLength = readUint(bytes, at + 20, 4, 'additional descriptor length');
    const end = at + FULL_STATUS_DESCRIPTOR_HEADER_LENGTH + descriptorLength;
    if (end > announcedEnd) {
      throw new ScsiDecodeError(
        `additional descriptor length ${descriptorLength} at byte ${at + 20} runs past the announced data`,
        'additional descriptor length',
        at + 20,
      );
    }
    if (end > bytes.length) break;
    const { transportId } = decodeTransportId(
      bytes,
      at + FULL_STATUS_DESCRIPTOR_HEADER_LENGTH,
      end,
    );
    const flags = bytes[at + 12] as number;
    const scopeType = bytes[at + 13] as number;
    descriptors.push({
      reservationKey: readBig(bytes, at, 8, 'reservation key'),
      allTgPt: (flags & 0x02) !== 0,
      holder: (flags & 0x01) !== 0,
      scope: scopeType >> 4,
      type: scopeType & 0x0f,
      relativeTargetPort: readUint(bytes, at + 18, 2, 'relative target port identifier'),
      transportId,
    });
    at = end;
  }
  return {
    generation: h.generation,
    additionalLength: h.additionalLength,
    descriptors,
    truncated: h.truncated,
  };
}

/** PRIN data decoded by service action. */
export type PrinData =
  | { kind: 'read-keys'; value: ReadKeys }
  | { kind: 'read-reservation'; value: ReadReservation }
  | { kind: 'report-capabilities'; value: Capabilities }
  | { kind: 'read-full-status'; value: FullStatus };

/** Decodes PRIN data for `serviceAction` (00h–03h); throws ScsiDecodeError for others or bad data. */
export function decodePrinData(serviceAction: number, bytes: Uint8Array): PrinData {
  switch (serviceAction) {
    case PrinSa.READ_KEYS:
      return { kind: 'read-keys', value: decodeReadKeys(bytes) };
    case PrinSa.READ_RESERVATION:
      return { kind: 'read-reservation', value: decodeReadReservation(bytes) };
    case PrinSa.REPORT_CAPABILITIES:
      return { kind: 'report-capabilities', value: decodeCapabilities(bytes) };
    case PrinSa.READ_FULL_STATUS:
      return { kind: 'read-full-status', value: decodeFullStatus(bytes) };
    default:
      throw new ScsiDecodeError(
        `prin service action 0x${serviceAction.toString(16)} has no data format`,
        'service action',
        1,
      );
  }
}
