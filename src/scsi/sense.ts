/**
 * Sense data: fixed (70h/71h) and descriptor (72h/73h) formats (scsi-pr.md §9.2–§9.5). Decoding follows
 * sg3_utils sg_scsi_normalize_sense: short buffers are read as far as they go, and the ADDITIONAL SENSE LENGTH
 * bounds what is read.
 */
import { checkBig, checkInt, readBig, writeBig, writeUint } from './bytes.js';
import { SenseKey, senseKeyName } from './constants.js';
import { ScsiDecodeError } from './errors.js';

export { senseKeyName };

/** Where an ILLEGAL REQUEST points: CDB or parameter data, byte offset, and bit when the device gave one (BPV). */
export interface FieldPointer {
  inCdb: boolean;
  byte: number;
  bit?: number;
}

/** Decoded sense data (either format). */
export interface Sense {
  responseCode: number;
  format: 'fixed' | 'descriptor';
  deferred: boolean;
  /** VALID: the INFORMATION field is valid. */
  valid: boolean;
  senseKey: number;
  asc: number;
  ascq: number;
  /** INFORMATION, when VALID is set. */
  information?: bigint;
  /** Field pointer of an ILLEGAL REQUEST with SKSV set. */
  fieldPointer?: FieldPointer;
  filemark: boolean;
  eom: boolean;
  ili: boolean;
}

/** Length of fixed-format sense as encodeSense writes it (ADDITIONAL SENSE LENGTH 0Ah). */
export const FIXED_SENSE_LENGTH = 18;

function fieldPointerFromSks(sks0: number, sks1: number, sks2: number): FieldPointer | undefined {
  if ((sks0 & 0x80) === 0) return undefined; // SKSV clear
  const fp: FieldPointer = { inCdb: (sks0 & 0x40) !== 0, byte: (sks1 << 8) | sks2 };
  if (sks0 & 0x08) fp.bit = sks0 & 0x07;
  return fp;
}

/**
 * Decodes sense bytes of either format. Throws ScsiDecodeError for an empty buffer, a response code other than
 * 70h–73h, or a sense data descriptor that overruns the ADDITIONAL SENSE LENGTH.
 */
export function decodeSense(bytes: Uint8Array): Sense {
  if (bytes.length === 0) throw new ScsiDecodeError('no sense data', 'response code', 0);
  const responseCode = (bytes[0] as number) & 0x7f;
  const at = (i: number, end: number): number => (i < end ? (bytes[i] as number) : 0);
  if (responseCode === 0x70 || responseCode === 0x71) {
    if (bytes.length < 3) {
      throw new ScsiDecodeError(
        `fixed sense is ${bytes.length} bytes, the sense key needs 3`,
        'sense key',
        2,
      );
    }
    // ADDITIONAL SENSE LENGTH bounds the record; a shorter buffer is read as far as it goes.
    const end = bytes.length > 7 ? Math.min(bytes.length, 8 + (bytes[7] as number)) : bytes.length;
    const b2 = bytes[2] as number;
    const senseKey = b2 & 0x0f;
    const valid = ((bytes[0] as number) & 0x80) !== 0;
    const sense: Sense = {
      responseCode,
      format: 'fixed',
      deferred: responseCode === 0x71,
      valid,
      senseKey,
      asc: at(12, end),
      ascq: at(13, end),
      filemark: (b2 & 0x80) !== 0,
      eom: (b2 & 0x40) !== 0,
      ili: (b2 & 0x20) !== 0,
    };
    if (valid && end >= 7) sense.information = readBig(bytes, 3, 4, 'information');
    if (senseKey === SenseKey.ILLEGAL_REQUEST && end >= 18) {
      const fp = fieldPointerFromSks(at(15, end), at(16, end), at(17, end));
      if (fp) sense.fieldPointer = fp;
    }
    return sense;
  }
  if (responseCode === 0x72 || responseCode === 0x73) {
    if (bytes.length < 4) {
      throw new ScsiDecodeError(
        `descriptor sense is ${bytes.length} bytes, asc/ascq need 4`,
        'additional sense code',
        2,
      );
    }
    const sense: Sense = {
      responseCode,
      format: 'descriptor',
      deferred: responseCode === 0x73,
      valid: false,
      senseKey: (bytes[1] as number) & 0x0f,
      asc: bytes[2] as number,
      ascq: bytes[3] as number,
      filemark: false,
      eom: false,
      ili: false,
    };
    if (bytes.length < 8) return sense;
    const announcedEnd = 8 + (bytes[7] as number);
    let pos = 8;
    while (pos + 2 <= Math.min(announcedEnd, bytes.length)) {
      const type = bytes[pos] as number;
      const length = 2 + (bytes[pos + 1] as number);
      if (pos + length > announcedEnd) {
        throw new ScsiDecodeError(
          `sense descriptor 0x${type.toString(16)} at byte ${pos} runs past the additional sense length`,
          'additional length',
          pos + 1,
        );
      }
      if (pos + length > bytes.length) break; // cut by the sense buffer size
      if (type === 0x00 && length >= 12) {
        // Information descriptor: VALID in byte 2, 8-byte INFORMATION in bytes 4–11.
        sense.valid = ((bytes[pos + 2] as number) & 0x80) !== 0;
        if (sense.valid) sense.information = readBig(bytes, pos + 4, 8, 'information');
      } else if (type === 0x02 && length >= 8 && sense.senseKey === SenseKey.ILLEGAL_REQUEST) {
        const fp = fieldPointerFromSks(
          bytes[pos + 4] as number,
          bytes[pos + 5] as number,
          bytes[pos + 6] as number,
        );
        if (fp) sense.fieldPointer = fp;
      } else if (type === 0x04 && length >= 4) {
        // Stream commands descriptor (SSC): FILEMARK, EOM, ILI in byte 3.
        const b3 = bytes[pos + 3] as number;
        sense.filemark = (b3 & 0x80) !== 0;
        sense.eom = (b3 & 0x40) !== 0;
        sense.ili = (b3 & 0x20) !== 0;
      }
      pos += length;
    }
    return sense;
  }
  throw new ScsiDecodeError(
    `response code 0x${responseCode.toString(16)} is not sense data (70h–73h)`,
    'response code',
    0,
  );
}

/** What encodeSense needs; the rest defaults to zero/false. */
export interface SenseInput {
  senseKey: number;
  asc: number;
  ascq: number;
  /** @default 'fixed' (18 bytes) */
  format?: 'fixed' | 'descriptor';
  /** @default false */
  deferred?: boolean;
  fieldPointer?: FieldPointer;
  /** Sets VALID and INFORMATION (fixed: 32 bits; descriptor: 64 bits). */
  information?: bigint;
  /** @default false */
  filemark?: boolean;
  /** @default false */
  eom?: boolean;
  /** @default false */
  ili?: boolean;
}

function sksBytes(fp: FieldPointer): [number, number, number] {
  checkInt(fp.byte, 0, 0xffff, 'fieldPointer.byte');
  let b0 = 0x80 | (fp.inCdb ? 0x40 : 0);
  if (fp.bit !== undefined) b0 |= 0x08 | checkInt(fp.bit, 0, 7, 'fieldPointer.bit');
  return [b0, fp.byte >> 8, fp.byte & 0xff];
}

/** Encodes sense data as a device would send it (fixed: 18 bytes). Throws ScsiEncodeError for out-of-range fields. */
export function encodeSense(input: SenseInput): Uint8Array {
  const senseKey = checkInt(input.senseKey, 0, 0xf, 'senseKey');
  const asc = checkInt(input.asc, 0, 0xff, 'asc');
  const ascq = checkInt(input.ascq, 0, 0xff, 'ascq');
  const deferred = input.deferred ?? false;
  const tapeFlags = (input.filemark ? 0x80 : 0) | (input.eom ? 0x40 : 0) | (input.ili ? 0x20 : 0);
  if ((input.format ?? 'fixed') === 'fixed') {
    const out = new Uint8Array(FIXED_SENSE_LENGTH);
    out[0] = deferred ? 0x71 : 0x70;
    out[2] = tapeFlags | senseKey;
    if (input.information !== undefined) {
      out[0] = out[0] | 0x80;
      writeBig(out, 3, 4, checkBig(input.information, 32, 'information'));
    }
    out[7] = FIXED_SENSE_LENGTH - 8;
    out[12] = asc;
    out[13] = ascq;
    if (input.fieldPointer) out.set(sksBytes(input.fieldPointer), 15);
    return out;
  }
  const descriptors: number[] = [];
  if (input.information !== undefined) {
    const info = new Uint8Array(12);
    info.set([0x00, 0x0a, 0x80]);
    writeBig(info, 4, 8, checkBig(input.information, 64, 'information'));
    descriptors.push(...info);
  }
  if (input.fieldPointer) descriptors.push(0x02, 0x06, 0, 0, ...sksBytes(input.fieldPointer), 0);
  if (tapeFlags) descriptors.push(0x04, 0x02, 0, tapeFlags);
  const out = new Uint8Array(8 + descriptors.length);
  out[0] = deferred ? 0x73 : 0x72;
  out[1] = senseKey;
  out[2] = asc;
  out[3] = ascq;
  writeUint(out, 7, 1, descriptors.length);
  out.set(descriptors, 8);
  return out;
}

// ASC/ASCQ words as sg3_utils prints them (sg_lib_data.c), lower-cased; the PR-relevant ones of scsi-pr.md §9.5
// plus the usual tape/changer ones.
const ASC_WORDS: Record<number, string> = {
  0x0000: 'no additional sense information',
  0x0001: 'filemark detected',
  0x0002: 'end-of-partition/medium detected',
  0x0004: 'beginning-of-partition/medium detected',
  0x0005: 'end-of-data detected',
  0x0016: 'operation in progress',
  0x0400: 'logical unit not ready, cause not reportable',
  0x0401: 'logical unit is in process of becoming ready',
  0x0402: 'logical unit not ready, initializing command required',
  0x0403: 'logical unit not ready, manual intervention required',
  0x0412: 'logical unit not ready, offline',
  0x0800: 'logical unit communication failure',
  0x0801: 'logical unit communication time-out',
  0x1a00: 'parameter list length error',
  0x2000: 'invalid command operation code',
  0x2101: 'invalid element address',
  0x2400: 'invalid field in cdb',
  0x2500: 'logical unit not supported',
  0x2600: 'invalid field in parameter list',
  0x2601: 'parameter not supported',
  0x2602: 'parameter value invalid',
  0x2604: 'invalid release of persistent reservation',
  0x2700: 'write protected',
  0x2800: 'not ready to ready change, medium may have changed',
  0x2801: 'import or export element accessed',
  0x2900: 'power on, reset, or bus device reset occurred',
  0x2901: 'power on occurred',
  0x2902: 'scsi bus reset occurred',
  0x2903: 'bus device reset function occurred',
  0x2904: 'device internal reset',
  0x2907: 'i_t nexus loss occurred',
  0x2a01: 'mode parameters changed',
  0x2a03: 'reservations preempted',
  0x2a04: 'reservations released',
  0x2a05: 'registrations preempted',
  0x2c00: 'command sequence error',
  0x3a00: 'medium not present',
  0x3b0d: 'medium destination element full',
  0x3b0e: 'medium source element empty',
  0x3b12: 'medium magazine removed',
  0x3b13: 'medium magazine inserted',
  0x3f0e: 'reported luns data has changed',
  0x4400: 'internal target failure',
  0x4401: 'persistent reservation information lost',
  0x4700: 'scsi parity error',
  0x4e00: 'overlapped commands attempted',
  0x5302: 'medium removal prevented',
  0x5504: 'insufficient registration resources',
  0x5d00: 'failure prediction threshold exceeded',
};

/** ASC/ASCQ in words, e.g. (0x2a, 0x05) → 'registrations preempted'; unknown → 'asc=0x99 ascq=0x1'. */
export function describeAsc(asc: number, ascq: number): string {
  return ASC_WORDS[(asc << 8) | ascq] ?? `asc=0x${asc.toString(16)} ascq=0x${ascq.toString(16)}`;
}

/** Where a field pointer points, e.g. 'command byte 2' or 'parameter byte 20 bit 3'. */
export function describeFieldPointer(fp: FieldPointer): string {
  return `${fp.inCdb ? 'command' : 'parameter'} byte ${fp.byte}${fp.bit !== undefined ? ` bit ${fp.bit}` : ''}`;
}

/** One line, e.g. 'ILLEGAL REQUEST: invalid field in cdb (command byte 2)'; deferred errors end in '(deferred)'. */
export function describeSense(s: Sense): string {
  let text = `${senseKeyName(s.senseKey)}: ${describeAsc(s.asc, s.ascq)}`;
  if (s.fieldPointer) text += ` (${describeFieldPointer(s.fieldPointer)})`;
  if (s.deferred) text += ' (deferred)';
  return text;
}
