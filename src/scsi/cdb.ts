/**
 * CDBs other than PRIN/PROUT: discovery (INQUIRY, REPORT LUNS, TEST UNIT READY, REQUEST SENSE), SPC-2
 * RESERVE/RELEASE, and the medium-access commands conformance tests send to provoke conflicts (scsi-pr.md §6.2).
 */
import { checkInt, need, readUint, writeUint } from './bytes.js';
import { Opcode } from './constants.js';
import { ScsiDecodeError } from './errors.js';

function expectOpcode(cdb: Uint8Array, opcode: number, length: number): void {
  need(cdb, 0, length, 'cdb');
  if (cdb[0] !== opcode) {
    throw new ScsiDecodeError(
      `operation code 0x${(cdb[0] as number).toString(16)} is not 0x${opcode.toString(16)}`,
      'operation code',
      0,
    );
  }
}

/**
 * CDB length from the opcode's group code (bits 7–5): 6, 10, 12 or 16 bytes; undefined for the reserved group
 * 3 (variable length) and the vendor-specific groups 6 and 7.
 */
export function cdbLength(opcode: number): number | undefined {
  return [6, 10, 10, undefined, 16, 12, undefined, undefined][(opcode >> 5) & 0x7];
}

/** INQUIRY CDB (6 bytes). `pageCode` needs `evpd` (else the device answers 24h/00h; sent as given). */
export function encodeInquiry(fields: {
  evpd?: boolean;
  pageCode?: number;
  allocationLength: number;
}): Uint8Array {
  const cdb = new Uint8Array(6);
  cdb[0] = Opcode.INQUIRY;
  cdb[1] = fields.evpd ? 0x01 : 0;
  cdb[2] = checkInt(fields.pageCode ?? 0, 0, 0xff, 'pageCode');
  writeUint(cdb, 3, 2, checkInt(fields.allocationLength, 0, 0xffff, 'allocationLength'));
  return cdb;
}

/** Decodes an INQUIRY CDB (target side). */
export function decodeInquiryCdb(cdb: Uint8Array): {
  evpd: boolean;
  pageCode: number;
  allocationLength: number;
  control: number;
} {
  expectOpcode(cdb, Opcode.INQUIRY, 6);
  return {
    evpd: ((cdb[1] as number) & 0x01) !== 0,
    pageCode: cdb[2] as number,
    allocationLength: readUint(cdb, 3, 2, 'allocation length'),
    control: cdb[5] as number,
  };
}

/** TEST UNIT READY CDB (6 zero bytes). */
export function encodeTestUnitReady(): Uint8Array {
  return new Uint8Array(6);
}

/** REQUEST SENSE CDB; `desc` asks for descriptor-format sense. Allocation length 0–255. */
export function encodeRequestSense(allocationLength: number, desc = false): Uint8Array {
  const cdb = new Uint8Array(6);
  cdb[0] = Opcode.REQUEST_SENSE;
  cdb[1] = desc ? 0x01 : 0;
  cdb[4] = checkInt(allocationLength, 0, 0xff, 'allocationLength');
  return cdb;
}

/** Decodes a REQUEST SENSE CDB (target side). */
export function decodeRequestSenseCdb(cdb: Uint8Array): {
  desc: boolean;
  allocationLength: number;
  control: number;
} {
  expectOpcode(cdb, Opcode.REQUEST_SENSE, 6);
  return {
    desc: ((cdb[1] as number) & 0x01) !== 0,
    allocationLength: cdb[4] as number,
    control: cdb[5] as number,
  };
}

/** REPORT LUNS CDB (12 bytes): SELECT REPORT 0–255 (0 = all LUs), allocation length in bytes 6–9. */
export function encodeReportLuns(selectReport: number, allocationLength: number): Uint8Array {
  const cdb = new Uint8Array(12);
  cdb[0] = Opcode.REPORT_LUNS;
  cdb[2] = checkInt(selectReport, 0, 0xff, 'selectReport');
  writeUint(cdb, 6, 4, checkInt(allocationLength, 0, 0xffffffff, 'allocationLength'));
  return cdb;
}

/** Decodes a REPORT LUNS CDB (target side). */
export function decodeReportLunsCdb(cdb: Uint8Array): {
  selectReport: number;
  allocationLength: number;
  control: number;
} {
  expectOpcode(cdb, Opcode.REPORT_LUNS, 12);
  return {
    selectReport: cdb[2] as number,
    allocationLength: readUint(cdb, 6, 4, 'allocation length'),
    control: cdb[11] as number,
  };
}

function rw10(opcode: number, fields: { lba: number; transferLength: number }): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = opcode;
  writeUint(cdb, 2, 4, checkInt(fields.lba, 0, 0xffffffff, 'lba'));
  writeUint(cdb, 7, 2, checkInt(fields.transferLength, 0, 0xffff, 'transferLength'));
  return cdb;
}

/** READ(10) CDB (a read-class command for conflict tests). */
export function encodeRead10(fields: { lba: number; transferLength: number }): Uint8Array {
  return rw10(Opcode.READ_10, fields);
}

/** WRITE(10) CDB (a write-class command for conflict tests). */
export function encodeWrite10(fields: { lba: number; transferLength: number }): Uint8Array {
  return rw10(Opcode.WRITE_10, fields);
}

function rw6Tape(
  opcode: number,
  fields: { transferLength: number; fixed?: boolean; sili?: boolean },
): Uint8Array {
  const cdb = new Uint8Array(6);
  cdb[0] = opcode;
  cdb[1] = (fields.sili ? 0x02 : 0) | (fields.fixed ? 0x01 : 0);
  writeUint(cdb, 2, 3, checkInt(fields.transferLength, 0, 0xffffff, 'transferLength'));
  return cdb;
}

/** READ(6) CDB in the SSC (tape) layout: FIXED, SILI, 24-bit transfer length. */
export function encodeRead6(fields: {
  transferLength: number;
  fixed?: boolean;
  sili?: boolean;
}): Uint8Array {
  return rw6Tape(Opcode.READ_6, fields);
}

/** WRITE(6) CDB in the SSC (tape) layout: FIXED, 24-bit transfer length. */
export function encodeWrite6(fields: { transferLength: number; fixed?: boolean }): Uint8Array {
  return rw6Tape(Opcode.WRITE_6, fields);
}

/** SPC-2 RESERVE(6) CDB (whole LU). */
export function encodeReserve6(): Uint8Array {
  return Uint8Array.of(Opcode.RESERVE_6, 0, 0, 0, 0, 0);
}

/** SPC-2 RELEASE(6) CDB (whole LU). */
export function encodeRelease6(): Uint8Array {
  return Uint8Array.of(Opcode.RELEASE_6, 0, 0, 0, 0, 0);
}

/** SPC-2 RESERVE(10) CDB (whole LU, no third party). */
export function encodeReserve10(): Uint8Array {
  return Uint8Array.of(Opcode.RESERVE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

/** SPC-2 RELEASE(10) CDB (whole LU, no third party). */
export function encodeRelease10(): Uint8Array {
  return Uint8Array.of(Opcode.RELEASE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

/** SMC MOVE MEDIUM CDB (12 bytes): element addresses 0–65535, INVERT in byte 10 bit 0. */
export function encodeMoveMedium(fields: {
  transportElement: number;
  sourceElement: number;
  destinationElement: number;
  invert?: boolean;
}): Uint8Array {
  const cdb = new Uint8Array(12);
  cdb[0] = Opcode.MOVE_MEDIUM;
  writeUint(cdb, 2, 2, checkInt(fields.transportElement, 0, 0xffff, 'transportElement'));
  writeUint(cdb, 4, 2, checkInt(fields.sourceElement, 0, 0xffff, 'sourceElement'));
  writeUint(cdb, 6, 2, checkInt(fields.destinationElement, 0, 0xffff, 'destinationElement'));
  cdb[10] = fields.invert ? 0x01 : 0;
  return cdb;
}

/** SMC EXCHANGE MEDIUM CDB (12 bytes). */
export function encodeExchangeMedium(fields: {
  transportElement: number;
  sourceElement: number;
  firstDestinationElement: number;
  secondDestinationElement: number;
}): Uint8Array {
  const cdb = new Uint8Array(12);
  cdb[0] = Opcode.EXCHANGE_MEDIUM;
  writeUint(cdb, 2, 2, checkInt(fields.transportElement, 0, 0xffff, 'transportElement'));
  writeUint(cdb, 4, 2, checkInt(fields.sourceElement, 0, 0xffff, 'sourceElement'));
  writeUint(
    cdb,
    6,
    2,
    checkInt(fields.firstDestinationElement, 0, 0xffff, 'firstDestinationElement'),
  );
  writeUint(
    cdb,
    8,
    2,
    checkInt(fields.secondDestinationElement, 0, 0xffff, 'secondDestinationElement'),
  );
  return cdb;
}

/**
 * SMC READ ELEMENT STATUS CDB (12 bytes): VOLTAG, ELEMENT TYPE CODE (0 all, 1 transport, 2 storage,
 * 3 import/export, 4 data transfer), starting element, count, CURDATA, DVCID, 24-bit allocation length.
 */
export function encodeReadElementStatus(fields: {
  voltag?: boolean;
  elementType?: number;
  startingElement?: number;
  numberOfElements: number;
  curdata?: boolean;
  dvcid?: boolean;
  allocationLength: number;
}): Uint8Array {
  const cdb = new Uint8Array(12);
  cdb[0] = Opcode.READ_ELEMENT_STATUS;
  cdb[1] = (fields.voltag ? 0x10 : 0) | checkInt(fields.elementType ?? 0, 0, 0xf, 'elementType');
  writeUint(cdb, 2, 2, checkInt(fields.startingElement ?? 0, 0, 0xffff, 'startingElement'));
  writeUint(cdb, 4, 2, checkInt(fields.numberOfElements, 0, 0xffff, 'numberOfElements'));
  cdb[6] = (fields.curdata ? 0x02 : 0) | (fields.dvcid ? 0x01 : 0);
  writeUint(cdb, 7, 3, checkInt(fields.allocationLength, 0, 0xffffff, 'allocationLength'));
  return cdb;
}

/** SMC INITIALIZE ELEMENT STATUS CDB (6 bytes). */
export function encodeInitializeElementStatus(): Uint8Array {
  return Uint8Array.of(Opcode.INITIALIZE_ELEMENT_STATUS, 0, 0, 0, 0, 0);
}

/** SMC POSITION TO ELEMENT CDB (10 bytes). */
export function encodePositionToElement(fields: {
  transportElement: number;
  destinationElement: number;
}): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = Opcode.POSITION_TO_ELEMENT;
  writeUint(cdb, 2, 2, checkInt(fields.transportElement, 0, 0xffff, 'transportElement'));
  writeUint(cdb, 4, 2, checkInt(fields.destinationElement, 0, 0xffff, 'destinationElement'));
  return cdb;
}

/** PREVENT ALLOW MEDIUM REMOVAL CDB: `prevent` sets PREVENT = 01b. */
export function encodePreventAllowMediumRemoval(prevent: boolean): Uint8Array {
  return Uint8Array.of(Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, prevent ? 0x01 : 0, 0);
}

/** MODE SENSE(6) CDB: DBD, page control 0–3, page code 0–3Fh, subpage, allocation 0–255. */
export function encodeModeSense6(fields: {
  dbd?: boolean;
  pageControl?: number;
  pageCode: number;
  subpageCode?: number;
  allocationLength: number;
}): Uint8Array {
  const cdb = new Uint8Array(6);
  cdb[0] = Opcode.MODE_SENSE_6;
  cdb[1] = fields.dbd ? 0x08 : 0;
  cdb[2] =
    (checkInt(fields.pageControl ?? 0, 0, 3, 'pageControl') << 6) |
    checkInt(fields.pageCode, 0, 0x3f, 'pageCode');
  cdb[3] = checkInt(fields.subpageCode ?? 0, 0, 0xff, 'subpageCode');
  cdb[4] = checkInt(fields.allocationLength, 0, 0xff, 'allocationLength');
  return cdb;
}

/** LOG SENSE CDB (10 bytes): page control 0–3 (default 1, cumulative), page code 0–3Fh. */
export function encodeLogSense(fields: {
  pageControl?: number;
  pageCode: number;
  subpageCode?: number;
  allocationLength: number;
}): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = Opcode.LOG_SENSE;
  cdb[2] =
    (checkInt(fields.pageControl ?? 1, 0, 3, 'pageControl') << 6) |
    checkInt(fields.pageCode, 0, 0x3f, 'pageCode');
  cdb[3] = checkInt(fields.subpageCode ?? 0, 0, 0xff, 'subpageCode');
  writeUint(cdb, 7, 2, checkInt(fields.allocationLength, 0, 0xffff, 'allocationLength'));
  return cdb;
}

/** READ CAPACITY(10) CDB. */
export function encodeReadCapacity10(): Uint8Array {
  const cdb = new Uint8Array(10);
  cdb[0] = Opcode.READ_CAPACITY_10;
  return cdb;
}
