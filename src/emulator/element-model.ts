/**
 * The medium changer's element model: one medium transport (the picker), storage slots in magazines, an optional
 * import/export (mail) slot and one or more data transfer elements (drives), each cartridge with its barcode.
 * READ ELEMENT STATUS and MODE SENSE page 1Dh answer from it and MOVE MEDIUM changes it; the reservation access
 * rules were applied before any of these run. Each data transfer element identifies its drive LU (DVCID) by the
 * drive's NAA, so an emulated fabric is one consistent loader.
 * @internal
 */
import {
  decodeReadElementStatusCdb,
  ElementType,
  encodeElementAddressAssignmentPage,
  encodeElementStatusData,
  encodeModeSense6Data,
  ELEMENT_ADDRESS_ASSIGNMENT_PAGE,
  type ElementDescriptor,
  type ElementStatusPage,
} from '../scsi/index.js';
import { check, good, invalidCdbField, type Answer } from './answers.js';

/** How a changer's elements are laid out and filled (the fabric's `elements:` of a changer LU). */
export interface ElementLayoutSpec {
  /** Storage slots in all. @default 16 (two 8-slot magazines, as a SuperLoader 3) */
  slots?: number;
  /** An import/export (mail) slot. @default true */
  mailSlot?: boolean;
  /** NAA of each drive LU, in data transfer element order (undefined: no identifier). @default one drive */
  drives?: readonly (bigint | undefined)[];
  /** Barcodes by storage slot number (1-based); others empty. */
  cartridges?: Readonly<Record<number, string>>;
  /** Cartridges already in drives: drive index (0-based) → slot number it came from and barcode. */
  loaded?: Readonly<Record<number, { slot: number; barcode: string }>>;
}

/** Element addresses: transport 0, drives from 1, the mail slot at 0x10, storage from 0x20. */
export const ELEMENT_BASE = { transport: 0x00, drive: 0x01, mail: 0x10, storage: 0x20 } as const;

interface Element {
  readonly type: number;
  readonly address: number;
  barcode?: string;
  /** Where the cartridge was last taken from. */
  source?: number;
  /** Data transfer elements: the drive LU's NAA. */
  readonly naa?: bigint;
}

/** One changer's elements. */
export class ElementModel {
  private readonly elements: Element[] = [];

  constructor(spec: ElementLayoutSpec = {}) {
    const drives = spec.drives ?? [undefined];
    this.elements.push({ type: ElementType.MEDIUM_TRANSPORT, address: ELEMENT_BASE.transport });
    drives.forEach((naa, i) =>
      this.elements.push({
        type: ElementType.DATA_TRANSFER,
        address: ELEMENT_BASE.drive + i,
        ...(naa === undefined ? {} : { naa }),
      }),
    );
    if (spec.mailSlot ?? true)
      this.elements.push({ type: ElementType.IMPORT_EXPORT, address: ELEMENT_BASE.mail });
    for (let i = 0; i < (spec.slots ?? 16); i++) {
      const barcode = spec.cartridges?.[i + 1];
      this.elements.push({
        type: ElementType.STORAGE,
        address: ELEMENT_BASE.storage + i,
        ...(barcode === undefined ? {} : { barcode }),
      });
    }
    for (const [drive, { slot, barcode }] of Object.entries(spec.loaded ?? {})) {
      const element = this.at(ELEMENT_BASE.drive + Number(drive));
      if (element?.type !== ElementType.DATA_TRANSFER)
        throw new RangeError(`loaded: no drive ${drive}`);
      element.barcode = barcode;
      element.source = ELEMENT_BASE.storage + slot - 1;
    }
  }

  private at(address: number): Element | undefined {
    return this.elements.find((e) => e.address === address);
  }

  private ofType(type: number): Element[] {
    return this.elements.filter((e) => e.type === type);
  }

  /** MOVE MEDIUM: source full, destination empty, both reachable; 5/3B/0E or 5/3B/0D otherwise (SMC-3). */
  move(transport: number, source: number, destination: number): Answer {
    if (this.at(transport)?.type !== ElementType.MEDIUM_TRANSPORT) return invalidCdbField(2);
    const from = this.at(source);
    const to = this.at(destination);
    if (from === undefined || from.type === ElementType.MEDIUM_TRANSPORT) return invalidCdbField(4);
    if (to === undefined || to.type === ElementType.MEDIUM_TRANSPORT) return invalidCdbField(6);
    if (from.barcode === undefined) return check(0x05, 0x3b, 0x0e); // MEDIUM SOURCE ELEMENT EMPTY
    if (to.barcode !== undefined) return check(0x05, 0x3b, 0x0d); // MEDIUM DESTINATION ELEMENT FULL
    to.barcode = from.barcode;
    const origin = from.type === ElementType.STORAGE ? from.address : from.source;
    if (origin === undefined) delete to.source;
    else to.source = origin;
    delete from.barcode;
    delete from.source;
    return good();
  }

  /** READ ELEMENT STATUS: the elements from the starting address, by type, cut to the allocation length. */
  readElementStatus(cdb: Uint8Array): Answer {
    let fields;
    try {
      fields = decodeReadElementStatusCdb(cdb);
    } catch {
      return invalidCdbField(1);
    }
    const chosen = this.elements
      .filter((e) => fields.elementType === ElementType.ALL || e.type === fields.elementType)
      .filter((e) => e.address >= fields.startingElement)
      .sort((a, b) => a.address - b.address)
      .slice(0, fields.numberOfElements);
    if (chosen.length === 0 && fields.numberOfElements > 0 && !this.at(fields.startingElement))
      return invalidCdbField(2);
    const pages: ElementStatusPage[] = [];
    for (const type of [1, 2, 3, 4]) {
      const descriptors = chosen
        .filter((e) => e.type === type)
        .map((e) => this.describe(e, fields.dvcid));
      if (descriptors.length > 0)
        pages.push({ elementType: type, pvoltag: fields.voltag, avoltag: false, descriptors });
    }
    const data = encodeElementStatusData(
      {
        firstElementAddress: chosen[0]?.address ?? 0,
        numberOfElements: chosen.length,
        pages,
      },
      { dvcid: fields.dvcid },
    );
    return good(data.subarray(0, Math.min(data.length, fields.allocationLength)));
  }

  private describe(e: Element, dvcid: boolean): ElementDescriptor {
    const full = e.barcode !== undefined;
    const d: ElementDescriptor = {
      address: e.address,
      full,
      except: false,
      access: e.type !== ElementType.MEDIUM_TRANSPORT,
      importExportFlags: e.type === ElementType.IMPORT_EXPORT ? 0x30 : 0, // INENAB, EXENAB
      asc: 0,
      ascq: 0,
      busInfo: 0,
      busAddress: 0,
      svalid: full && e.source !== undefined,
      invert: false,
      ed: false,
      mediumType: full ? 1 : 0,
      sourceAddress: full ? (e.source ?? 0) : 0,
      primaryVolumeTag: { identifier: e.barcode ?? '', sequence: 0 },
      vendorSpecific: new Uint8Array(0),
    };
    if (dvcid && e.naa !== undefined) {
      const value = new Uint8Array(8);
      for (let i = 7, v = e.naa; i >= 0; i--, v >>= 8n) value[i] = Number(v & 0xffn);
      d.identifier = { codeSet: 1, identifierType: 3, value };
    }
    return d;
  }

  /** MODE SENSE(6) with page 1Dh (or all pages, 3Fh): the element address assignment. */
  modeSense6(cdb: Uint8Array): Answer | undefined {
    const pageCode = (cdb[2] ?? 0) & 0x3f;
    if (pageCode !== ELEMENT_ADDRESS_ASSIGNMENT_PAGE && pageCode !== 0x3f) return undefined;
    const first = (type: number) => this.ofType(type)[0]?.address ?? 0;
    const count = (type: number) => this.ofType(type).length;
    const page = encodeElementAddressAssignmentPage({
      firstTransport: first(1),
      transportCount: count(1),
      firstStorage: first(2),
      storageCount: count(2),
      firstImportExport: first(3),
      importExportCount: count(3),
      firstDataTransfer: first(4),
      dataTransferCount: count(4),
    });
    const data = encodeModeSense6Data({
      mediumType: 0,
      deviceSpecific: 0,
      blockDescriptors: new Uint8Array(0),
      pages: [page],
    });
    return good(data.subarray(0, Math.min(data.length, cdb[4] ?? 0)));
  }
}

/** The changer commands the element model answers; undefined for any other (the ordinary table answers). */
export function executeChangerCommand(
  model: ElementModel,
  opcode: number,
  cdb: Uint8Array,
): Answer | undefined {
  const u16 = (at: number) => ((cdb[at] ?? 0) << 8) | (cdb[at + 1] ?? 0);
  switch (opcode) {
    case 0xb8: // READ ELEMENT STATUS
      return model.readElementStatus(cdb);
    case 0xa5: // MOVE MEDIUM
      return model.move(u16(2), u16(4), u16(6));
    case 0x1a: // MODE SENSE(6)
      return model.modeSense6(cdb);
    default:
      return undefined;
  }
}
