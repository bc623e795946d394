/**
 * Media changer element status (SMC-3): the READ ELEMENT STATUS (B8h) CDB and its data — a header, then one
 * element status page per element type, each a run of fixed-length element descriptors (element address,
 * full/except/access flags, exception ASC/ASCQ, source element, primary/alternate volume tags, and with DVCID the
 * device identifier of a data transfer element) — and the Element Address Assignment mode page (1Dh) in MODE
 * SENSE(6) data. Lossless: every field the layout defines is typed, reserved and vendor bytes are kept raw, so a
 * decoded value encodes back to the same bytes.
 */
import {
  asciiBytes,
  checkInt,
  concat,
  latin1,
  need,
  readUint,
  trimEndPad,
  writeUint,
} from './bytes.js';
import { Opcode } from './constants.js';
import { ScsiDecodeError, ScsiEncodeError } from './errors.js';

/** ELEMENT TYPE CODE values (SMC-3 table "Element type code"). */
export const ElementType = {
  ALL: 0,
  MEDIUM_TRANSPORT: 1,
  STORAGE: 2,
  IMPORT_EXPORT: 3,
  DATA_TRANSFER: 4,
} as const;

/** Fields of a READ ELEMENT STATUS CDB (encoded by encodeReadElementStatus in cdb.ts). */
export interface ReadElementStatusCdb {
  /** Report volume tags (barcodes). */
  voltag: boolean;
  /** 0 all, 1 medium transport, 2 storage, 3 import/export, 4 data transfer. */
  elementType: number;
  startingElement: number;
  numberOfElements: number;
  /** The device may not move anything to find out (SMC-3 CURDATA). */
  curdata: boolean;
  /** Report data transfer elements' device identifiers. */
  dvcid: boolean;
  /** 24-bit allocation length. */
  allocationLength: number;
}

/** Decodes a READ ELEMENT STATUS CDB; throws ScsiDecodeError for another opcode or an element type above 4. */
export function decodeReadElementStatusCdb(cdb: Uint8Array): ReadElementStatusCdb {
  need(cdb, 0, 12, 'cdb');
  if (cdb[0] !== Opcode.READ_ELEMENT_STATUS) {
    throw new ScsiDecodeError(`opcode 0x${(cdb[0] as number).toString(16)} is not b8`, 'opcode', 0);
  }
  const b1 = cdb[1] as number;
  const elementType = b1 & 0x0f;
  if (elementType > 4) {
    throw new ScsiDecodeError(
      `element type code ${elementType} is reserved`,
      'element type code',
      1,
    );
  }
  return {
    voltag: (b1 & 0x10) !== 0,
    elementType,
    startingElement: readUint(cdb, 2, 2, 'starting element address'),
    numberOfElements: readUint(cdb, 4, 2, 'number of elements'),
    curdata: ((cdb[6] as number) & 0x02) !== 0,
    dvcid: ((cdb[6] as number) & 0x01) !== 0,
    allocationLength: readUint(cdb, 7, 3, 'allocation length'),
  };
}

/** A volume tag: 32-byte VOLUME IDENTIFIER (the barcode, space padded) and VOLUME SEQUENCE NUMBER. */
export interface VolumeTag {
  /** Barcode without its padding. */
  identifier: string;
  sequence: number;
}

/** The device identifier of a data transfer element (DVCID): a designator like VPD 83h's. */
export interface ElementIdentifier {
  codeSet: number;
  identifierType: number;
  /** The identifier bytes as the descriptor carries them (padding included). */
  value: Uint8Array;
}

/** One element descriptor. Flags not defined for the element's type are 0. */
export interface ElementDescriptor {
  address: number;
  /** A cartridge is in the element. */
  full: boolean;
  /** The element is in an abnormal state; `asc`/`ascq` say which. */
  except: boolean;
  /** The medium transport element can reach it (storage, import/export, data transfer). */
  access: boolean;
  /** Import/export only: IMPEXP (placed by an operator), EXENAB, INENAB, CMC, OIR — byte 2 bits 1, 4, 5, 6, 7. */
  importExportFlags: number;
  asc: number;
  ascq: number;
  /** Data transfer only: byte 6 (NOT BUS, ID VALID, LU VALID, LUN) and byte 7 (SCSI bus address), kept raw. */
  busInfo: number;
  busAddress: number;
  /** SOURCE STORAGE ELEMENT ADDRESS is valid: where the cartridge was last taken from. */
  svalid: boolean;
  invert: boolean;
  /** SMC-3 ED bit and MEDIUM TYPE (0 unspecified, 1 data, 2 cleaning, 3 diagnostic, 4 WORM). */
  ed: boolean;
  mediumType: number;
  sourceAddress: number;
  primaryVolumeTag?: VolumeTag;
  alternateVolumeTag?: VolumeTag;
  /** With DVCID: the identifier header and value (data transfer elements name their drive; others are empty). */
  identifier?: ElementIdentifier;
  /** Bytes after the defined fields, to the descriptor length (vendor specific or padding). */
  vendorSpecific: Uint8Array;
}

/** One element status page: the descriptors of one element type. */
export interface ElementStatusPage {
  elementType: number;
  /** Descriptors carry a primary / an alternate volume tag. */
  pvoltag: boolean;
  avoltag: boolean;
  descriptors: ElementDescriptor[];
}

/** READ ELEMENT STATUS data. */
export interface ElementStatusData {
  firstElementAddress: number;
  /** NUMBER OF ELEMENTS AVAILABLE: how many the device would report with enough allocation length. */
  numberOfElements: number;
  /** BYTE COUNT OF REPORT AVAILABLE (all pages, without the 8-byte header). */
  byteCountAvailable: number;
  pages: ElementStatusPage[];
  /** Fewer bytes arrived than the report announced; only whole descriptors are decoded. */
  truncated: boolean;
}

const VOLUME_TAG_LENGTH = 36;
const FIXED_LENGTH = 12;

function encodeVolumeTag(tag: VolumeTag | undefined, field: string): Uint8Array {
  const out = new Uint8Array(VOLUME_TAG_LENGTH);
  if (tag === undefined) return out;
  if (tag.identifier.length > 32) {
    throw new ScsiEncodeError(`invalid ${field}: "${tag.identifier}" is longer than 32`, field);
  }
  out.fill(0x20, 0, 32);
  out.set(asciiBytes(tag.identifier, field), 0);
  writeUint(out, 34, 2, checkInt(tag.sequence, 0, 0xffff, `${field}.sequence`));
  return out;
}

function decodeVolumeTag(bytes: Uint8Array, at: number): VolumeTag {
  return {
    identifier: trimEndPad(latin1(bytes, at, at + 32)),
    sequence: readUint(bytes, at + 34, 2, 'volume sequence number'),
  };
}

/** Descriptor length of a page: the fixed part, the tags it carries, the longest identifier and vendor bytes. */
function descriptorLengthOf(page: ElementStatusPage, dvcid: boolean): number {
  let length = FIXED_LENGTH;
  if (page.pvoltag) length += VOLUME_TAG_LENGTH;
  if (page.avoltag) length += VOLUME_TAG_LENGTH;
  let tail = 0;
  for (const d of page.descriptors) {
    const id = dvcid ? 4 + (d.identifier?.value.length ?? 0) : 0;
    tail = Math.max(tail, id + d.vendorSpecific.length);
  }
  return length + tail;
}

function encodeDescriptor(
  d: ElementDescriptor,
  page: ElementStatusPage,
  length: number,
  dvcid: boolean,
): Uint8Array {
  const out = new Uint8Array(length);
  writeUint(out, 0, 2, checkInt(d.address, 0, 0xffff, 'address'));
  out[2] =
    (d.full ? 0x01 : 0) |
    (d.except ? 0x04 : 0) |
    (d.access ? 0x08 : 0) |
    (checkInt(d.importExportFlags, 0, 0xff, 'importExportFlags') & 0xf2);
  out[4] = checkInt(d.asc, 0, 0xff, 'asc');
  out[5] = checkInt(d.ascq, 0, 0xff, 'ascq');
  out[6] = checkInt(d.busInfo, 0, 0xff, 'busInfo');
  out[7] = checkInt(d.busAddress, 0, 0xff, 'busAddress');
  out[9] =
    (d.svalid ? 0x80 : 0) |
    (d.invert ? 0x40 : 0) |
    (d.ed ? 0x08 : 0) |
    checkInt(d.mediumType, 0, 7, 'mediumType');
  writeUint(out, 10, 2, checkInt(d.sourceAddress, 0, 0xffff, 'sourceAddress'));
  let at = FIXED_LENGTH;
  if (page.pvoltag) {
    out.set(encodeVolumeTag(d.primaryVolumeTag, 'primaryVolumeTag'), at);
    at += VOLUME_TAG_LENGTH;
  }
  if (page.avoltag) {
    out.set(encodeVolumeTag(d.alternateVolumeTag, 'alternateVolumeTag'), at);
    at += VOLUME_TAG_LENGTH;
  }
  if (dvcid) {
    const id = d.identifier;
    out[at] = checkInt(id?.codeSet ?? 0, 0, 0xf, 'identifier.codeSet');
    out[at + 1] = checkInt(id?.identifierType ?? 0, 0, 0xf, 'identifier.identifierType');
    out[at + 3] = checkInt(id?.value.length ?? 0, 0, 0xff, 'identifier.length');
    if (id !== undefined) out.set(id.value, at + 4);
    at += 4 + (id?.value.length ?? 0);
  }
  out.set(d.vendorSpecific, at);
  return out;
}

/**
 * Encodes READ ELEMENT STATUS data (the whole report; the device cuts it to the allocation length). With `dvcid`
 * every descriptor carries the identifier header; descriptors of a page are padded to its longest.
 */
export function encodeElementStatusData(
  data: Omit<ElementStatusData, 'byteCountAvailable' | 'truncated'>,
  options: { dvcid?: boolean } = {},
): Uint8Array {
  const dvcid = options.dvcid ?? false;
  const pages = data.pages.map((page) => {
    const length = descriptorLengthOf(page, dvcid);
    const body = concat(page.descriptors.map((d) => encodeDescriptor(d, page, length, dvcid)));
    const head = new Uint8Array(8);
    head[0] = checkInt(page.elementType, 1, 4, 'elementType');
    head[1] = (page.pvoltag ? 0x80 : 0) | (page.avoltag ? 0x40 : 0);
    writeUint(head, 2, 2, checkInt(length, 0, 0xffff, 'descriptorLength'));
    writeUint(head, 5, 3, checkInt(body.length, 0, 0xffffff, 'byteCount'));
    return concat([head, body]);
  });
  const report = concat(pages);
  const head = new Uint8Array(8);
  writeUint(head, 0, 2, checkInt(data.firstElementAddress, 0, 0xffff, 'firstElementAddress'));
  writeUint(head, 2, 2, checkInt(data.numberOfElements, 0, 0xffff, 'numberOfElements'));
  writeUint(head, 5, 3, checkInt(report.length, 0, 0xffffff, 'byteCount'));
  return concat([head, report]);
}

function decodeDescriptor(
  bytes: Uint8Array,
  at: number,
  length: number,
  page: ElementStatusPage,
  dvcid: boolean,
): ElementDescriptor {
  const flags = bytes[at + 2] as number;
  const b9 = bytes[at + 9] as number;
  const d: ElementDescriptor = {
    address: readUint(bytes, at, 2, 'element address'),
    full: (flags & 0x01) !== 0,
    except: (flags & 0x04) !== 0,
    access: (flags & 0x08) !== 0,
    importExportFlags: flags & 0xf2,
    asc: bytes[at + 4] as number,
    ascq: bytes[at + 5] as number,
    busInfo: bytes[at + 6] as number,
    busAddress: bytes[at + 7] as number,
    svalid: (b9 & 0x80) !== 0,
    invert: (b9 & 0x40) !== 0,
    ed: (b9 & 0x08) !== 0,
    mediumType: b9 & 0x07,
    sourceAddress: readUint(bytes, at + 10, 2, 'source storage element address'),
    vendorSpecific: new Uint8Array(0),
  };
  const end = at + length;
  let p = at + FIXED_LENGTH;
  if (page.pvoltag) {
    d.primaryVolumeTag = decodeVolumeTag(bytes, p);
    p += VOLUME_TAG_LENGTH;
  }
  if (page.avoltag) {
    d.alternateVolumeTag = decodeVolumeTag(bytes, p);
    p += VOLUME_TAG_LENGTH;
  }
  if (dvcid && p + 4 <= end) {
    const idLength = bytes[p + 3] as number;
    if (p + 4 + idLength > end) {
      throw new ScsiDecodeError(
        `identifier length ${idLength} at byte ${p + 3} runs past the element descriptor`,
        'identifier length',
        p + 3,
      );
    }
    d.identifier = {
      codeSet: (bytes[p] as number) & 0x0f,
      identifierType: (bytes[p + 1] as number) & 0x0f,
      value: bytes.slice(p + 4, p + 4 + idLength),
    };
    p += 4 + idLength;
  }
  d.vendorSpecific = bytes.slice(p, end);
  return d;
}

/**
 * Decodes READ ELEMENT STATUS data. `dvcid` says whether the CDB asked for device identifiers (the data cannot
 * tell them from vendor bytes). Data cut by the allocation length keeps the announced counts, decodes whole
 * descriptors only and sets `truncated`. Throws ScsiDecodeError for a descriptor length too short for the tags
 * the page announces, or a page that runs past the report.
 */
export function decodeElementStatusData(
  bytes: Uint8Array,
  options: { dvcid?: boolean } = {},
): ElementStatusData {
  need(bytes, 0, 8, 'element status header');
  const byteCountAvailable = readUint(bytes, 5, 3, 'byte count of report available');
  const reportEnd = 8 + byteCountAvailable;
  const end = Math.min(bytes.length, reportEnd);
  const pages: ElementStatusPage[] = [];
  let at = 8;
  while (at + 8 <= end) {
    const elementType = (bytes[at] as number) & 0x0f;
    const page: ElementStatusPage = {
      elementType,
      pvoltag: ((bytes[at + 1] as number) & 0x80) !== 0,
      avoltag: ((bytes[at + 1] as number) & 0x40) !== 0,
      descriptors: [],
    };
    const length = readUint(bytes, at + 2, 2, 'element descriptor length');
    const needed =
      FIXED_LENGTH +
      (page.pvoltag ? VOLUME_TAG_LENGTH : 0) +
      (page.avoltag ? VOLUME_TAG_LENGTH : 0);
    if (length < needed) {
      throw new ScsiDecodeError(
        `element descriptor length ${length} at byte ${at + 2} is shorter than the ${needed} bytes its page needs`,
        'element descriptor length',
        at + 2,
      );
    }
    const count = readUint(bytes, at + 5, 3, 'byte count of descriptor data available');
    const pageEnd = at + 8 + count;
    if (pageEnd > reportEnd) {
      throw new ScsiDecodeError(
        `element status page at byte ${at} runs ${pageEnd - reportEnd} bytes past the report`,
        'byte count of descriptor data available',
        at + 5,
      );
    }
    if (count % length !== 0) {
      throw new ScsiDecodeError(
        `descriptor data of ${count} bytes at byte ${at + 5} is not a whole number of ${length}-byte descriptors`,
        'byte count of descriptor data available',
        at + 5,
      );
    }
    for (let d = at + 8; d + length <= Math.min(pageEnd, end); d += length) {
      page.descriptors.push(decodeDescriptor(bytes, d, length, page, options.dvcid ?? false));
    }
    pages.push(page);
    at = pageEnd;
  }
  return {
    firstElementAddress: readUint(bytes, 0, 2, 'first element address reported'),
    numberOfElements: readUint(bytes, 2, 2, 'number of elements available'),
    byteCountAvailable,
    pages,
    truncated: bytes.length < reportEnd,
  };
}

/** Element Address Assignment mode page (1Dh): the first address and count of each element type. */
export interface ElementAddressAssignment {
  firstTransport: number;
  transportCount: number;
  firstStorage: number;
  storageCount: number;
  firstImportExport: number;
  importExportCount: number;
  firstDataTransfer: number;
  dataTransferCount: number;
}

/** Page code of the Element Address Assignment mode page. */
export const ELEMENT_ADDRESS_ASSIGNMENT_PAGE = 0x1d;
const EAA_FIELDS = [
  'firstTransport',
  'transportCount',
  'firstStorage',
  'storageCount',
  'firstImportExport',
  'importExportCount',
  'firstDataTransfer',
  'dataTransferCount',
] as const;

/** Encodes mode page 1Dh (20 bytes, PAGE LENGTH 12h). */
export function encodeElementAddressAssignmentPage(page: ElementAddressAssignment): Uint8Array {
  const out = new Uint8Array(20);
  out[0] = ELEMENT_ADDRESS_ASSIGNMENT_PAGE;
  out[1] = 0x12;
  EAA_FIELDS.forEach((field, i) =>
    writeUint(out, 2 + 2 * i, 2, checkInt(page[field], 0, 0xffff, field)),
  );
  return out;
}

/** Decodes mode page 1Dh (from its page code byte); throws ScsiDecodeError for another page or a short one. */
export function decodeElementAddressAssignmentPage(bytes: Uint8Array): ElementAddressAssignment {
  need(bytes, 0, 2, 'page code');
  if (((bytes[0] as number) & 0x3f) !== ELEMENT_ADDRESS_ASSIGNMENT_PAGE) {
    throw new ScsiDecodeError(
      `page code 0x${((bytes[0] as number) & 0x3f).toString(16)} is not 1d`,
      'page code',
      0,
    );
  }
  if ((bytes[1] as number) < 0x12) {
    throw new ScsiDecodeError(
      `page length ${bytes[1] as number} is shorter than 18`,
      'page length',
      1,
    );
  }
  const out = {} as Record<(typeof EAA_FIELDS)[number], number>;
  EAA_FIELDS.forEach((field, i) => (out[field] = readUint(bytes, 2 + 2 * i, 2, field)));
  return out;
}

/** MODE SENSE(6) data: the 4-byte header, block descriptors (raw) and the mode pages (raw, page code first). */
export interface ModeSense6Data {
  mediumType: number;
  deviceSpecific: number;
  blockDescriptors: Uint8Array;
  pages: Uint8Array[];
  /** Fewer bytes arrived than MODE DATA LENGTH announced. */
  truncated: boolean;
}

/** Encodes MODE SENSE(6) data. */
export function encodeModeSense6Data(data: Omit<ModeSense6Data, 'truncated'>): Uint8Array {
  const body = concat([data.blockDescriptors, ...data.pages]);
  const head = new Uint8Array(4);
  head[0] = checkInt(3 + body.length, 0, 0xff, 'modeDataLength');
  head[1] = checkInt(data.mediumType, 0, 0xff, 'mediumType');
  head[2] = checkInt(data.deviceSpecific, 0, 0xff, 'deviceSpecific');
  head[3] = checkInt(data.blockDescriptors.length, 0, 0xff, 'blockDescriptorLength');
  return concat([head, body]);
}

/** Decodes MODE SENSE(6) data; a page cut by the allocation length is left out (`truncated`). */
export function decodeModeSense6Data(bytes: Uint8Array): ModeSense6Data {
  need(bytes, 0, 4, 'mode parameter header');
  const dataEnd = 1 + (bytes[0] as number);
  const end = Math.min(bytes.length, dataEnd);
  const bdEnd = 4 + (bytes[3] as number);
  if (bdEnd > dataEnd) {
    throw new ScsiDecodeError(
      `block descriptor length ${bytes[3] as number} runs past the mode data length`,
      'block descriptor length',
      3,
    );
  }
  const pages: Uint8Array[] = [];
  let at = bdEnd;
  while (at + 2 <= end) {
    const spf = ((bytes[at] as number) & 0x40) !== 0;
    const length = spf
      ? at + 4 <= end
        ? readUint(bytes, at + 2, 2, 'page length') + 4
        : -1
      : (bytes[at + 1] as number) + 2;
    if (length < 0 || at + length > end) break;
    pages.push(bytes.slice(at, at + length));
    at += length;
  }
  return {
    mediumType: bytes[1] as number,
    deviceSpecific: bytes[2] as number,
    blockDescriptors: bytes.slice(4, Math.min(bdEnd, end)),
    pages,
    truncated: bytes.length < dataEnd,
  };
}
