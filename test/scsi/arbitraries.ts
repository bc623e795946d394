// fast-check generators for the codec's value types, shared by the scsi tests.
import fc from 'fast-check';
import type {
  Capabilities,
  Designator,
  FullStatusDescriptor,
  ProutBasic,
  ProutBasicServiceAction,
  ProutMove,
  SenseInput,
  StandardInquiry,
  TransportId,
} from '../../src/scsi/index.js';

/** Any uint64 (fast-check 4 has no fc.bigUint). */
export const uint64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** Any uint32 as a number. */
export const uint32 = fc.nat({ max: 0xffffffff });
/** A nibble. */
export const nibble = fc.nat({ max: 15 });

const NAME_CHARS = Array.from({ length: 0x7e - 0x20 }, (_, i) =>
  String.fromCharCode(0x21 + i),
).filter((c) => c !== ',');
/** A valid iSCSI name (printable ASCII, no space or comma, 1–223 bytes), biased to realistic lengths. */
export const iscsiName = fc.oneof(
  {
    arbitrary: fc.string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 40 }),
    weight: 9,
  },
  {
    arbitrary: fc.string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 223 }),
    weight: 1,
  },
);
/** 12 lower-case hex digits. */
export const isid = fc.string({
  unit: fc.constantFrom(...'0123456789abcdef'),
  minLength: 12,
  maxLength: 12,
});

/** Raw TransportID bytes that do not decode as FC, SAS or iSCSI (other protocols or reserved format codes). */
export const rawTransportIdBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  // Fixed-size (24 bytes) with a protocol other than FC/SAS/iSCSI, or FC/SAS with a reserved format code.
  fc
    .tuple(
      fc.oneof(
        fc.tuple(fc.constant(0), fc.constantFrom(1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
        fc.tuple(fc.constantFrom(1, 2, 3), fc.constantFrom(0, 6)),
      ),
      nibble,
      fc.uint8Array({ minLength: 23, maxLength: 23 }),
    )
    .map(([[format, protocol], reserved, rest]) =>
      Uint8Array.of((format << 6) | ((reserved & 3) << 4) | protocol, ...rest),
    ),
  // iSCSI with a reserved format code (10b/11b): variable length from its ADDITIONAL LENGTH.
  fc
    .tuple(
      fc.constantFrom(2, 3),
      fc.uint8Array({ minLength: 0, maxLength: 60 }),
      fc.nat({ max: 255 }),
    )
    .map(([format, body, b1]) =>
      Uint8Array.of((format << 6) | 5, b1, body.length >> 8, body.length & 0xff, ...body),
    ),
);

/** Any TransportID the encoder accepts. */
export const transportId: fc.Arbitrary<TransportId> = fc.oneof(
  uint64.map((wwpn): TransportId => ({ protocol: 'fc', wwpn })),
  uint64.map((sasAddress): TransportId => ({ protocol: 'sas', sasAddress })),
  fc
    .tuple(iscsiName, fc.option(isid, { nil: undefined }))
    .map(([name, id]): TransportId =>
      id === undefined ? { protocol: 'iscsi', name } : { protocol: 'iscsi', name, isid: id },
    ),
  rawTransportIdBytes.map((bytes): TransportId => ({ protocol: 'raw', bytes })),
);

/** A PROUT with the basic parameter list. */
export const proutBasic: fc.Arbitrary<ProutBasic> = fc.record({
  serviceAction: fc.constantFrom<ProutBasicServiceAction>(0, 1, 2, 3, 4, 5, 6, 8),
  scope: nibble,
  type: nibble,
  reservationKey: uint64,
  serviceActionKey: uint64,
  specIPt: fc.array(transportId, { maxLength: 4 }),
  allTgPt: fc.boolean(),
  aptpl: fc.boolean(),
});

/** A REGISTER AND MOVE. */
export const proutMove: fc.Arbitrary<ProutMove> = fc.record({
  serviceAction: fc.constant(7 as const),
  scope: nibble,
  type: nibble,
  reservationKey: uint64,
  serviceActionKey: uint64,
  unreg: fc.boolean(),
  aptpl: fc.boolean(),
  relativeTargetPort: fc.nat({ max: 0xffff }),
  transportId,
});

/** REPORT CAPABILITIES fields. */
export const capabilities: fc.Arbitrary<Omit<Capabilities, 'length' | 'truncated'>> = fc.record({
  rlrC: fc.boolean(),
  crh: fc.boolean(),
  sipC: fc.boolean(),
  atpC: fc.boolean(),
  ptplC: fc.boolean(),
  tmv: fc.boolean(),
  allowCommands: fc.nat({ max: 7 }),
  ptplA: fc.boolean(),
  supportedTypes: fc.uniqueArray(nibble).map((types) => [...types].sort((a, b) => a - b)),
});

/** One READ FULL STATUS descriptor. */
export const fullStatusDescriptor: fc.Arbitrary<FullStatusDescriptor> = fc.record({
  reservationKey: uint64,
  allTgPt: fc.boolean(),
  holder: fc.boolean(),
  scope: nibble,
  type: nibble,
  relativeTargetPort: fc.nat({ max: 0xffff }),
  transportId,
});

/** Sense fields that survive a round trip (field pointers only with ILLEGAL REQUEST; 32-bit INFORMATION in fixed). */
export const senseInput: fc.Arbitrary<SenseInput> = fc
  .record({
    format: fc.constantFrom<'fixed' | 'descriptor'>('fixed', 'descriptor'),
    senseKey: nibble,
    asc: fc.nat({ max: 255 }),
    ascq: fc.nat({ max: 255 }),
    deferred: fc.boolean(),
    filemark: fc.boolean(),
    eom: fc.boolean(),
    ili: fc.boolean(),
    fieldPointer: fc.option(
      fc.record({
        inCdb: fc.boolean(),
        byte: fc.nat({ max: 0xffff }),
        bit: fc.option(fc.nat({ max: 7 }), { nil: undefined }),
      }),
      { nil: undefined },
    ),
    information: fc.option(uint64, { nil: undefined }),
  })
  .map((r) => {
    const input: SenseInput = {
      format: r.format,
      senseKey: r.fieldPointer ? 5 : r.senseKey,
      asc: r.asc,
      ascq: r.ascq,
      deferred: r.deferred,
      filemark: r.filemark,
      eom: r.eom,
      ili: r.ili,
    };
    if (r.fieldPointer) {
      input.fieldPointer =
        r.fieldPointer.bit === undefined
          ? { inCdb: r.fieldPointer.inCdb, byte: r.fieldPointer.byte }
          : { inCdb: r.fieldPointer.inCdb, byte: r.fieldPointer.byte, bit: r.fieldPointer.bit };
    }
    if (r.information !== undefined)
      input.information = r.format === 'fixed' ? r.information & 0xffffffffn : r.information;
    return input;
  });

const printable = (max: number): fc.Arbitrary<string> =>
  fc
    .string({
      unit: fc.constantFrom(...Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i))),
      maxLength: max,
    })
    .map((s) => s.replace(/ +$/, ''));

/** Standard INQUIRY fields (ASCII without trailing spaces, which the decoder trims). */
export const standardInquiry: fc.Arbitrary<StandardInquiry> = fc.record({
  peripheralQualifier: fc.nat({ max: 7 }),
  peripheralDeviceType: fc.nat({ max: 31 }),
  rmb: fc.boolean(),
  version: fc.nat({ max: 255 }),
  responseDataFormat: nibble,
  additionalLength: fc.constant(31),
  tpgs: fc.nat({ max: 3 }),
  mchngr: fc.boolean(),
  multip: fc.boolean(),
  vendor: printable(8),
  product: printable(16),
  revision: printable(4),
});

/** A VPD 83h designator (protocolId present exactly when PIV is set). */
export const designator: fc.Arbitrary<Designator> = fc
  .record({
    codeSet: nibble,
    piv: fc.boolean(),
    association: fc.nat({ max: 3 }),
    designatorType: nibble,
    protocolId: nibble,
    value: fc.uint8Array({ maxLength: 255 }),
  })
  .map(({ protocolId, ...d }) => (d.piv ? { ...d, protocolId } : d));

/** A serial number (printable ASCII without leading/trailing spaces). */
export const serial = printable(40).map((s) => s.trim());
