/**
 * Standard INQUIRY data and the VPD pages used for discovery: 00h supported pages, 80h unit serial number, 83h
 * device identification (scsi-pr.md §11), plus the LU identity rule of §11.3 used to merge paths.
 */
import {
  asciiBytes,
  checkInt,
  concat,
  latin1,
  need,
  readUint,
  toHex,
  trimEndPad,
  writeUint,
} from './bytes.js';
import { ScsiDecodeError, ScsiEncodeError } from './errors.js';

/** Standard INQUIRY data (vendor/product/revision with trailing spaces trimmed). */
export interface StandardInquiry {
  peripheralQualifier: number;
  peripheralDeviceType: number;
  rmb: boolean;
  version: number;
  responseDataFormat: number;
  additionalLength: number;
  tpgs: number;
  mchngr: boolean;
  multip: boolean;
  vendor: string;
  product: string;
  revision: string;
}

/** Length of standard INQUIRY data as encodeStandardInquiry writes it (ADDITIONAL LENGTH 31). */
export const STANDARD_INQUIRY_LENGTH = 36;

function padded(text: string, length: number, field: string): Uint8Array {
  if (text.length > length)
    throw new ScsiEncodeError(`invalid ${field}: "${text}" is longer than ${length} bytes`, field);
  const out = new Uint8Array(length).fill(0x20);
  out.set(asciiBytes(text, field));
  return out;
}

/** Encodes 36 bytes of standard INQUIRY data; ASCII fields are space-padded; additionalLength defaults to 31. */
export function encodeStandardInquiry(
  inq: Omit<StandardInquiry, 'additionalLength'> & { additionalLength?: number },
): Uint8Array {
  const out = new Uint8Array(STANDARD_INQUIRY_LENGTH);
  out[0] =
    (checkInt(inq.peripheralQualifier, 0, 7, 'peripheralQualifier') << 5) |
    checkInt(inq.peripheralDeviceType, 0, 0x1f, 'peripheralDeviceType');
  out[1] = inq.rmb ? 0x80 : 0;
  out[2] = checkInt(inq.version, 0, 0xff, 'version');
  out[3] = checkInt(inq.responseDataFormat, 0, 0xf, 'responseDataFormat');
  out[4] = checkInt(
    inq.additionalLength ?? STANDARD_INQUIRY_LENGTH - 5,
    0,
    0xff,
    'additionalLength',
  );
  out[5] = checkInt(inq.tpgs, 0, 3, 'tpgs') << 4;
  out[6] = (inq.multip ? 0x10 : 0) | (inq.mchngr ? 0x08 : 0);
  out.set(padded(inq.vendor, 8, 'vendor'), 8);
  out.set(padded(inq.product, 16, 'product'), 16);
  out.set(padded(inq.revision, 4, 'revision'), 32);
  return out;
}

/**
 * Decodes standard INQUIRY data. Needs at least 5 bytes; ASCII fields are read as far as the data goes
 * (`truncated` when fewer than 5 + ADDITIONAL LENGTH bytes arrived).
 */
export function decodeStandardInquiry(bytes: Uint8Array): StandardInquiry & { truncated: boolean } {
  need(bytes, 0, 5, 'additional length');
  const b0 = bytes[0] as number;
  const additionalLength = bytes[4] as number;
  const end = Math.min(bytes.length, 5 + additionalLength);
  const at = (i: number): number => (i < end ? (bytes[i] as number) : 0);
  const text = (start: number, stop: number): string =>
    trimEndPad(latin1(bytes, start, Math.min(stop, end)));
  return {
    peripheralQualifier: b0 >> 5,
    peripheralDeviceType: b0 & 0x1f,
    rmb: ((bytes[1] as number) & 0x80) !== 0,
    version: bytes[2] as number,
    responseDataFormat: (bytes[3] as number) & 0x0f,
    additionalLength,
    tpgs: (at(5) >> 4) & 0x03,
    mchngr: (at(6) & 0x08) !== 0,
    multip: (at(6) & 0x10) !== 0,
    vendor: text(8, 16),
    product: text(16, 32),
    revision: text(32, 36),
    truncated: bytes.length < 5 + additionalLength,
  };
}

/** VPD page codes used here. */
export const VpdPage = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
} as const;
/** A VPD page code listed in VpdPage. */
export type VpdPage = (typeof VpdPage)[keyof typeof VpdPage];

/** The 4-byte header of every VPD page. */
export interface VpdHeader {
  peripheralQualifier: number;
  peripheralDeviceType: number;
  pageCode: number;
  pageLength: number;
  /** Fewer than 4 + PAGE LENGTH bytes arrived. */
  truncated: boolean;
}

/** Decodes a VPD page header; with `expectedPage`, throws ScsiDecodeError if the page code differs. */
export function decodeVpdHeader(bytes: Uint8Array, expectedPage?: number): VpdHeader {
  need(bytes, 0, 4, 'page length');
  const pageCode = bytes[1] as number;
  if (expectedPage !== undefined && pageCode !== expectedPage) {
    throw new ScsiDecodeError(
      `vpd page code 0x${pageCode.toString(16)} is not 0x${expectedPage.toString(16)}`,
      'page code',
      1,
    );
  }
  const pageLength = readUint(bytes, 2, 2, 'page length');
  return {
    peripheralQualifier: (bytes[0] as number) >> 5,
    peripheralDeviceType: (bytes[0] as number) & 0x1f,
    pageCode,
    pageLength,
    truncated: bytes.length < 4 + pageLength,
  };
}

function vpdPage(peripheralDeviceType: number, pageCode: number, body: Uint8Array): Uint8Array {
  checkInt(body.length, 0, 0xffff, 'page length');
  const head = new Uint8Array(4);
  head[0] = checkInt(peripheralDeviceType, 0, 0x1f, 'peripheralDeviceType');
  head[1] = pageCode;
  writeUint(head, 2, 2, body.length);
  return concat([head, body]);
}

/** Encodes VPD page 00h listing `pages` (each 0–255) in the given order. */
export function encodeSupportedVpdPages(
  peripheralDeviceType: number,
  pages: readonly number[],
): Uint8Array {
  return vpdPage(
    peripheralDeviceType,
    VpdPage.SUPPORTED_PAGES,
    Uint8Array.from(pages, (p) => checkInt(p, 0, 0xff, 'pages')),
  );
}

/** Decodes VPD page 00h into its page codes (as many as arrived). */
export function decodeSupportedVpdPages(bytes: Uint8Array): number[] {
  const h = decodeVpdHeader(bytes, VpdPage.SUPPORTED_PAGES);
  return Array.from(bytes.subarray(4, 4 + h.pageLength));
}

/** Encodes VPD page 80h with an ASCII serial number. */
export function encodeUnitSerialNumber(peripheralDeviceType: number, serial: string): Uint8Array {
  return vpdPage(peripheralDeviceType, VpdPage.UNIT_SERIAL_NUMBER, asciiBytes(serial, 'serial'));
}

/** Decodes VPD page 80h; leading/trailing spaces and NULs are removed (SPC allows padding either side). */
export function decodeUnitSerialNumber(bytes: Uint8Array): string {
  const h = decodeVpdHeader(bytes, VpdPage.UNIT_SERIAL_NUMBER);
  return trimEndPad(latin1(bytes, 4, 4 + h.pageLength)).replace(/^[ \0]+/, '');
}

/** One designation descriptor of VPD page 83h. `protocolId` is present exactly when `piv` is set. */
export interface Designator {
  codeSet: number;
  piv: boolean;
  association: number;
  designatorType: number;
  protocolId?: number;
  value: Uint8Array;
}

/** CODE SET values. */
export const CodeSet = { BINARY: 1, ASCII: 2, UTF8: 3 } as const;
/** ASSOCIATION values. */
export const Association = { LOGICAL_UNIT: 0, TARGET_PORT: 1, TARGET_DEVICE: 2 } as const;
/** DESIGNATOR TYPE values (sg3_utils desig_type_str_arr). */
export const DesignatorType = {
  VENDOR_SPECIFIC: 0x0,
  T10_VENDOR_ID: 0x1,
  EUI_64: 0x2,
  NAA: 0x3,
  RELATIVE_TARGET_PORT: 0x4,
  TARGET_PORT_GROUP: 0x5,
  LOGICAL_UNIT_GROUP: 0x6,
  MD5_LU_ID: 0x7,
  SCSI_NAME_STRING: 0x8,
  PROTOCOL_SPECIFIC_PORT_ID: 0x9,
  UUID: 0xa,
} as const;

/** Encodes one designation descriptor (value up to 255 bytes). */
export function encodeDesignator(d: Designator): Uint8Array {
  const out = new Uint8Array(4 + checkInt(d.value.length, 0, 0xff, 'value.length'));
  out[0] =
    (checkInt(d.protocolId ?? 0, 0, 0xf, 'protocolId') << 4) |
    checkInt(d.codeSet, 0, 0xf, 'codeSet');
  out[1] =
    (d.piv ? 0x80 : 0) |
    (checkInt(d.association, 0, 3, 'association') << 4) |
    checkInt(d.designatorType, 0, 0xf, 'designatorType');
  out[3] = d.value.length;
  out.set(d.value, 4);
  return out;
}

/** Encodes VPD page 83h with the given designators. */
export function encodeDeviceIdentification(
  peripheralDeviceType: number,
  designators: readonly Designator[],
): Uint8Array {
  return vpdPage(
    peripheralDeviceType,
    VpdPage.DEVICE_IDENTIFICATION,
    concat(designators.map((d) => encodeDesignator(d))),
  );
}

/**
 * Decodes VPD page 83h. A descriptor cut by the allocation length ends the list; one that overruns PAGE LENGTH
 * throws ScsiDecodeError ('designator length').
 */
export function decodeDeviceIdentification(bytes: Uint8Array): Designator[] {
  const h = decodeVpdHeader(bytes, VpdPage.DEVICE_IDENTIFICATION);
  const pageEnd = 4 + h.pageLength;
  const out: Designator[] = [];
  let at = 4;
  while (at < pageEnd) {
    if (at + 4 > pageEnd) {
      throw new ScsiDecodeError(
        `designation descriptor at byte ${at} overruns the page length`,
        'page length',
        2,
      );
    }
    if (at + 4 > bytes.length) break;
    const length = bytes[at + 3] as number;
    if (at + 4 + length > pageEnd) {
      throw new ScsiDecodeError(
        `designator length ${length} at byte ${at + 3} runs past the page length`,
        'designator length',
        at + 3,
      );
    }
    if (at + 4 + length > bytes.length) break;
    const b0 = bytes[at] as number;
    const b1 = bytes[at + 1] as number;
    const d: Designator = {
      codeSet: b0 & 0x0f,
      piv: (b1 & 0x80) !== 0,
      association: (b1 >> 4) & 0x03,
      designatorType: b1 & 0x0f,
      value: bytes.slice(at + 4, at + 4 + length),
    };
    if (d.piv) d.protocolId = b0 >> 4;
    out.push(d);
    at += 4 + length;
  }
  return out;
}

function portNumber(value: Uint8Array): number {
  // Relative target port / target port group: identifier in bytes 2–3 of the 4-byte designator.
  return value.length >= 4 ? ((value[2] as number) << 8) | (value[3] as number) : 0;
}

/**
 * Printable designator: `naa.5000e11100000001`, `eui.0014c3000000beef`, `t10.QUANTUM UHDL…`, `name.<scsi name>`,
 * `rtp.2`, `tpg.1`, `vendor.<hex>`; others `lug.<n>`, `md5.<hex>`, `ppi.<hex>`, `uuid.<hex>`, `type0xb.<hex>`.
 */
export function formatDesignator(d: Designator): string {
  const text = (): string => trimEndPad(latin1(d.value, 0, d.value.length));
  switch (d.designatorType) {
    case DesignatorType.VENDOR_SPECIFIC:
      return `vendor.${toHex(d.value)}`;
    case DesignatorType.T10_VENDOR_ID:
      return `t10.${text()}`;
    case DesignatorType.EUI_64:
      return `eui.${toHex(d.value)}`;
    case DesignatorType.NAA:
      return `naa.${toHex(d.value)}`;
    case DesignatorType.RELATIVE_TARGET_PORT:
      return `rtp.${portNumber(d.value)}`;
    case DesignatorType.TARGET_PORT_GROUP:
      return `tpg.${portNumber(d.value)}`;
    case DesignatorType.LOGICAL_UNIT_GROUP:
      return `lug.${portNumber(d.value)}`;
    case DesignatorType.MD5_LU_ID:
      return `md5.${toHex(d.value)}`;
    case DesignatorType.SCSI_NAME_STRING:
      return `name.${text()}`;
    case DesignatorType.PROTOCOL_SPECIFIC_PORT_ID:
      return `ppi.${toHex(d.value)}`;
    case DesignatorType.UUID:
      return `uuid.${toHex(d.value)}`;
    default:
      return `type0x${d.designatorType.toString(16)}.${toHex(d.value)}`;
  }
}

// scsi-pr.md §11.3: NAA, then EUI-64, then SCSI name string, then T10 vendor id.
const LU_IDENTITY_PREFERENCE = [
  DesignatorType.NAA,
  DesignatorType.EUI_64,
  DesignatorType.SCSI_NAME_STRING,
  DesignatorType.T10_VENDOR_ID,
] as const;

/**
 * Identity of a logical unit, the same through every path (scsi-pr.md §11.3): the best LU-association designator
 * (NAA > EUI-64 > SCSI name > T10 vendor id) in formatDesignator form, else `serial.<vendor>.<product>.<serial>`.
 */
export function luIdentity(lu: {
  designators: readonly Designator[];
  vendor: string;
  product: string;
  serial: string;
}): string {
  for (const type of LU_IDENTITY_PREFERENCE) {
    const d = lu.designators.find(
      (x) => x.association === Association.LOGICAL_UNIT && x.designatorType === type,
    );
    if (d && d.value.length > 0) return formatDesignator(d);
  }
  return `serial.${lu.vendor.trim()}.${lu.product.trim()}.${lu.serial.trim()}`;
}

/** RELATIVE TARGET PORT IDENTIFIER of the path (target-port association, type 4), or undefined. */
export function relativeTargetPortOf(designators: readonly Designator[]): number | undefined {
  const d = designators.find(
    (x) =>
      x.association === Association.TARGET_PORT &&
      x.designatorType === DesignatorType.RELATIVE_TARGET_PORT,
  );
  return d ? portNumber(d.value) : undefined;
}

/** TARGET PORT GROUP of the path (target-port association, type 5), or undefined. */
export function targetPortGroupOf(designators: readonly Designator[]): number | undefined {
  const d = designators.find(
    (x) =>
      x.association === Association.TARGET_PORT &&
      x.designatorType === DesignatorType.TARGET_PORT_GROUP,
  );
  return d ? portNumber(d.value) : undefined;
}
