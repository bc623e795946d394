// READ ELEMENT STATUS and the Element Address Assignment page: hand-built bytes laid out per SMC-3, round-trip
// properties over every field, and totality of the decoders over random and mutated inputs.
import { fc, test } from '@fast-check/vitest';
import fcBase from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeElementAddressAssignmentPage,
  decodeElementStatusData,
  decodeModeSense6Data,
  decodeReadElementStatusCdb,
  encodeElementAddressAssignmentPage,
  encodeElementStatusData,
  encodeModeSense6Data,
  encodeReadElementStatus,
  fromHex,
  ScsiDecodeError,
  toHex,
  type ElementDescriptor,
  type ElementStatusPage,
} from '../../src/scsi/index.js';

// One drive (address 1) holding barcode "ABC001L8" taken from slot 0x20, identified by NAA 5000e11100000002;
// one full storage slot 0x21. VOLTAG and DVCID, as `mtx status` asks.
const SAMPLE_HEX = [
  '0001 0002 00 000080', // header: first element 1, 2 elements, 128 bytes of report
  // data transfer page: type 4, PVOLTAG, descriptor length 60 (12 + 36 + 4 + 8), 60 bytes
  '04 80 003c 00 00003c',
  '0001 09 00 00 00 00 00 00 81 0020', // FULL ACCESS, SVALID, medium type 1 (data), from 0x20
  '4142433030314c38' + '20'.repeat(24) + '0000 0000', // "ABC001L8", sequence 0
  '01 03 00 08 5000e11100000002', // binary NAA identifier
  // storage page: type 2, PVOLTAG, descriptor length 52 (12 + 36 + 4), 52 bytes
  '02 80 0034 00 000034',
  '0021 09 00 00 00 00 00 00 00 0000',
  '4142433030324c38' + '20'.repeat(24) + '0000 0000',
  '00 00 00 00',
].join('');

describe('READ ELEMENT STATUS', () => {
  it('encodes and decodes the CDB with VOLTAG, CURDATA and DVCID', () => {
    const cdb = encodeReadElementStatus({
      voltag: true,
      elementType: 4,
      startingElement: 1,
      numberOfElements: 2,
      curdata: true,
      dvcid: true,
      allocationLength: 0x1000,
    });
    expect(toHex(cdb)).toBe('b81400010002030010000000');
    expect(decodeReadElementStatusCdb(cdb)).toEqual({
      voltag: true,
      elementType: 4,
      startingElement: 1,
      numberOfElements: 2,
      curdata: true,
      dvcid: true,
      allocationLength: 0x1000,
    });
    expect(() => decodeReadElementStatusCdb(fromHex('b80500000001000000080000'))).toThrow(
      /element type code 5 is reserved/,
    );
  });

  it('decodes the SMC-3 layout field by field', () => {
    const data = decodeElementStatusData(fromHex(SAMPLE_HEX), { dvcid: true });
    expect(data.firstElementAddress).toBe(1);
    expect(data.numberOfElements).toBe(2);
    expect(data.truncated).toBe(false);
    const [drives, slots] = data.pages as [ElementStatusPage, ElementStatusPage];
    expect(drives.elementType).toBe(4);
    const drive = drives.descriptors[0] as ElementDescriptor;
    expect(drive).toMatchObject({
      address: 1,
      full: true,
      access: true,
      svalid: true,
      mediumType: 1,
      sourceAddress: 0x20,
      primaryVolumeTag: { identifier: 'ABC001L8', sequence: 0 },
      identifier: { codeSet: 1, identifierType: 3 },
    });
    expect(toHex(drive.identifier?.value ?? new Uint8Array())).toBe('5000e11100000002');
    expect(slots.descriptors[0]).toMatchObject({
      address: 0x21,
      full: true,
      svalid: false,
      primaryVolumeTag: { identifier: 'ABC002L8' },
      identifier: { value: new Uint8Array(0) },
    });
  });

  it('encodes the same bytes back', () => {
    const bytes = fromHex(SAMPLE_HEX);
    const decoded = decodeElementStatusData(bytes, { dvcid: true });
    expect(toHex(encodeElementStatusData(decoded, { dvcid: true }))).toBe(toHex(bytes));
  });

  it('keeps the announced counts and whole descriptors when cut by the allocation length', () => {
    const bytes = fromHex(SAMPLE_HEX);
    const cut = decodeElementStatusData(bytes.subarray(0, 8 + 8 + 60 + 8 + 20), { dvcid: true });
    expect(cut.truncated).toBe(true);
    expect(cut.byteCountAvailable).toBe(0x80);
    expect(cut.pages.map((p) => p.descriptors.length)).toEqual([1, 0]);
  });

  it('refuses a descriptor length too short for the volume tag its page announces', () => {
    const bytes = fromHex(SAMPLE_HEX);
    bytes[8 + 3] = 12;
    expect(() => decodeElementStatusData(bytes)).toThrow(ScsiDecodeError);
  });
});

describe('Element Address Assignment page', () => {
  const page = {
    firstTransport: 0,
    transportCount: 1,
    firstStorage: 0x20,
    storageCount: 16,
    firstImportExport: 0x10,
    importExportCount: 1,
    firstDataTransfer: 1,
    dataTransferCount: 1,
  };
  it('lays out page 1Dh in MODE SENSE(6) data', () => {
    const bytes = encodeModeSense6Data({
      mediumType: 0,
      deviceSpecific: 0,
      blockDescriptors: new Uint8Array(0),
      pages: [encodeElementAddressAssignmentPage(page)],
    });
    expect(toHex(bytes)).toBe('17000000' + '1d12' + '00000001002000100010000100010001' + '0000');
    const decoded = decodeModeSense6Data(bytes);
    expect(decodeElementAddressAssignmentPage(decoded.pages[0] as Uint8Array)).toEqual(page);
  });
});

const u16 = fc.integer({ min: 0, max: 0xffff });
const barcode = fc.stringMatching(/^[A-Z0-9]{0,32}$/);
const tag = fc.record({ identifier: barcode, sequence: u16 });

function pageArbitrary(dvcid: boolean) {
  return fc
    .record({
      elementType: fc.integer({ min: 1, max: 4 }),
      pvoltag: fc.boolean(),
      avoltag: fc.boolean(),
      idLength: fc.integer({ min: 0, max: 24 }),
      vendorLength: fc.integer({ min: 0, max: 8 }),
    })
    .chain((shape) =>
      fc
        .array(
          fc.record({
            address: u16,
            full: fc.boolean(),
            except: fc.boolean(),
            access: fc.boolean(),
            importExportFlags: fc.constantFrom(0, 0x02, 0x10, 0x20, 0x40, 0x80, 0xf2),
            asc: fc.integer({ min: 0, max: 255 }),
            ascq: fc.integer({ min: 0, max: 255 }),
            busInfo: fc.integer({ min: 0, max: 255 }),
            busAddress: fc.integer({ min: 0, max: 255 }),
            svalid: fc.boolean(),
            invert: fc.boolean(),
            ed: fc.boolean(),
            mediumType: fc.integer({ min: 0, max: 7 }),
            sourceAddress: u16,
            primaryVolumeTag: tag,
            alternateVolumeTag: tag,
            codeSet: fc.integer({ min: 0, max: 15 }),
            identifierType: fc.integer({ min: 0, max: 15 }),
            id: fc.uint8Array({ minLength: shape.idLength, maxLength: shape.idLength }),
            vendor: fc.uint8Array({ minLength: shape.vendorLength, maxLength: shape.vendorLength }),
          }),
          { maxLength: 6 },
        )
        .map((rows): ElementStatusPage => ({
          elementType: shape.elementType,
          pvoltag: shape.pvoltag,
          avoltag: shape.avoltag,
          descriptors: rows.map(
            ({
              primaryVolumeTag,
              alternateVolumeTag,
              codeSet,
              identifierType,
              id,
              vendor,
              ...d
            }) => ({
              ...d,
              ...(shape.pvoltag ? { primaryVolumeTag } : {}),
              ...(shape.avoltag ? { alternateVolumeTag } : {}),
              ...(dvcid ? { identifier: { codeSet, identifierType, value: id } } : {}),
              vendorSpecific: vendor,
            }),
          ),
        })),
    );
}

describe('element status properties', () => {
  test.prop([
    fc
      .boolean()
      .chain((dvcid) =>
        fc.tuple(fc.constant(dvcid), fc.array(pageArbitrary(dvcid), { maxLength: 4 }), u16, u16),
      ),
  ])('decode(encode(x)) = x for every field', ([dvcid, pages, first, count]) => {
    const bytes = encodeElementStatusData(
      { firstElementAddress: first, numberOfElements: count, pages },
      { dvcid },
    );
    const decoded = decodeElementStatusData(bytes, { dvcid });
    expect(decoded.truncated).toBe(false);
    expect(decoded.pages).toEqual(pages);
    expect(toHex(encodeElementStatusData(decoded, { dvcid }))).toBe(toHex(bytes));
    // Any cut keeps the header's counts and only whole descriptors.
    const cut = decodeElementStatusData(bytes.subarray(0, Math.max(8, bytes.length >> 1)), {
      dvcid,
    });
    expect(cut.byteCountAvailable).toBe(bytes.length - 8);
  });

  test.prop([
    fc.record({
      firstTransport: u16,
      transportCount: u16,
      firstStorage: u16,
      storageCount: u16,
      firstImportExport: u16,
      importExportCount: u16,
      firstDataTransfer: u16,
      dataTransferCount: u16,
    }),
  ])('page 1Dh round-trips', (page) => {
    expect(decodeElementAddressAssignmentPage(encodeElementAddressAssignmentPage(page))).toEqual(
      page,
    );
  });

  it('the decoders are total over 10,000 random and mutated inputs', () => {
    const valid = encodeElementStatusData(
      decodeElementStatusData(fromHex(SAMPLE_HEX), { dvcid: true }),
      { dvcid: true },
    );
    const inputs = fcBase.oneof(
      fcBase.uint8Array({ maxLength: 200 }),
      fcBase
        .tuple(
          fcBase.nat(valid.length - 1),
          fcBase.integer({ min: 0, max: 255 }),
          fcBase.nat(valid.length),
        )
        .map(([at, value, cut]) => {
          const bytes = valid.slice(0, Math.max(cut, 1));
          if (at < bytes.length) bytes[at] = value;
          return bytes;
        }),
    );
    fcBase.assert(
      fcBase.property(inputs, fcBase.boolean(), (bytes, dvcid) => {
        for (const decode of [
          () => decodeElementStatusData(bytes, { dvcid }),
          () => decodeModeSense6Data(bytes),
          () => decodeElementAddressAssignmentPage(bytes),
          () => decodeReadElementStatusCdb(bytes),
        ]) {
          try {
            decode();
          } catch (e) {
            if (!(e instanceof ScsiDecodeError)) throw e;
          }
        }
      }),
      { numRuns: 10_000 },
    );
  });
});
