// Every decoder is total: over 10,000 inputs (random bytes, and mutated or cut valid encodings) it returns a value
// or throws ScsiDecodeError naming a field and an offset (style.md §8). Decoders that read the same kind of bytes
// share one stream of inputs to keep the run short; each still sees every one of the 10,000 inputs.
import fc from 'fast-check';
import { describe, it } from 'vitest';
import {
  classifyResponse,
  decodeCapabilities,
  decodeDeviceIdentification,
  decodeFullStatus,
  decodeInquiryCdb,
  decodePrinCdb,
  decodePrinData,
  decodeProut,
  decodeProutCdb,
  decodeProutParameters,
  decodeReadKeys,
  decodeReadReservation,
  decodeReportLunsCdb,
  decodeReportLunsData,
  decodeRequestSenseCdb,
  decodeSense,
  decodeStandardInquiry,
  decodeSupportedVpdPages,
  decodeTransportId,
  decodeUnitSerialNumber,
  decodeVpdHeader,
  encodeCapabilities,
  encodeDeviceIdentification,
  encodeFullStatus,
  encodeProut,
  encodeReadKeys,
  encodeReadReservation,
  encodeReportLunsData,
  encodeSense,
  encodeStandardInquiry,
  encodeSupportedVpdPages,
  encodeTransportId,
  encodeUnitSerialNumber,
  ScsiDecodeError,
} from '../../src/scsi/index.js';
import {
  capabilities,
  designator,
  fullStatusDescriptor,
  proutBasic,
  proutMove,
  senseInput,
  serial,
  standardInquiry,
  transportId,
  uint32,
  uint64,
} from './arbitraries.js';

const RUNS = { numRuns: 10_000 };

/** Valid bytes with up to 4 bytes overwritten and, half the time, cut short or extended. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      valid,
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.uint8Array({ maxLength: 8 }),
    )
    .map(([bytes, writes, cut, tail]) => {
      let out = Uint8Array.from(bytes);
      if (out.length > 0) for (const [at, value] of writes) out[at % out.length] = value;
      if (cut !== undefined) {
        out =
          cut % 2 === 0
            ? out.subarray(0, cut % (out.length + 1))
            : Uint8Array.from([...out, ...tail]);
      }
      return out;
    });
}

const random = (maxLength: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });

/**
 * Calls `decode`; anything thrown must be a ScsiDecodeError with a field and an offset no further than just past
 * the input (a missing field is named at the offset where it should have been).
 */
function total(inputLength: number, decode: () => unknown): void {
  try {
    decode();
  } catch (e) {
    if (!(e instanceof ScsiDecodeError)) throw e;
    if (
      e.field === '' ||
      !Number.isInteger(e.offset) ||
      e.offset < 0 ||
      e.offset > inputLength + 8
    ) {
      throw new Error(
        `bad ScsiDecodeError: field "${e.field}" offset ${e.offset} for ${inputLength} bytes`,
        {
          cause: e,
        },
      );
    }
  }
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
}

/** PRIN-style data: random generation, a small ADDITIONAL LENGTH, random body. */
const prinHeaderBiased = fc
  .tuple(uint32, fc.nat({ max: 96 }), random(100))
  .map(([gen, addl, rest]) => {
    const out = new Uint8Array(8 + rest.length);
    new DataView(out.buffer).setUint32(0, gen);
    new DataView(out.buffer).setUint32(4, addl);
    out.set(rest, 8);
    return out;
  });

describe('decoders are total over 10,000 inputs', () => {
  it('decodeTransportId', () => {
    fc.assert(
      fc.property(
        fc.oneof(random(80), mutated(transportId.map(encodeTransportId))),
        fc.nat({ max: 8 }),
        (bytes, offset) => {
          total(bytes.length, () => {
            const { length } = decodeTransportId(bytes, Math.min(offset, bytes.length));
            check(
              length >= 1 && offset + length <= bytes.length,
              `length ${length} outside the input`,
            );
          });
        },
      ),
      RUNS,
    );
  });

  const prout = fc.oneof(proutBasic, proutMove).map((r) => encodeProut(r));
  it('decodeProutCdb, decodeProutParameters, decodeProut', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.tuple(random(12), random(120)),
          prout.map((p): [Uint8Array, Uint8Array] => [p.cdb, p.parameters]),
          fc.tuple(mutated(prout.map((p) => p.cdb)), mutated(prout.map((p) => p.parameters))),
        ),
        fc.nat({ max: 0x1f }),
        ([cdb, params], sa) => {
          total(cdb.length, () => decodeProutCdb(cdb));
          total(params.length, () => decodeProutParameters(sa, params));
          total(Math.max(cdb.length, params.length), () => decodeProut(cdb, params));
        },
      ),
      RUNS,
    );
  });

  const prinValid = fc.oneof(
    fc.array(uint64, { maxLength: 6 }).map((keys) => encodeReadKeys({ generation: 1, keys })),
    uint64.map((key) =>
      encodeReadReservation({ generation: 2, reservation: { key, scope: 0, type: 1 } }),
    ),
    capabilities.map(encodeCapabilities),
    fc
      .array(fullStatusDescriptor, { maxLength: 3 })
      .map((descriptors) => encodeFullStatus({ generation: 3, descriptors })),
  );
  it('decodeReadKeys, decodeReadReservation, decodeCapabilities, decodeFullStatus, decodePrinData', () => {
    fc.assert(
      fc.property(
        fc.oneof(random(64), prinHeaderBiased, mutated(prinValid)),
        fc.nat({ max: 5 }),
        (bytes, sa) => {
          total(bytes.length, () => {
            const r = decodeReadKeys(bytes);
            check(
              r.keys.length * 8 <= Math.min(r.additionalLength, bytes.length - 8),
              'more keys than bytes',
            );
            check(r.truncated === bytes.length < 8 + r.additionalLength, 'truncated flag wrong');
          });
          total(bytes.length, () => decodeReadReservation(bytes));
          total(bytes.length, () => {
            const c = decodeCapabilities(bytes);
            check(c.truncated === bytes.length < c.length, 'truncated flag wrong');
          });
          total(bytes.length, () => {
            const f = decodeFullStatus(bytes);
            check(
              f.descriptors.length * 48 <= f.additionalLength + 24 * f.descriptors.length,
              'descriptor count',
            );
          });
          total(Math.max(bytes.length, 1), () => decodePrinData(sa, bytes));
        },
      ),
      RUNS,
    );
  });

  const senseBiased = fc
    .tuple(fc.constantFrom(0x70, 0x71, 0x72, 0x73, 0xf0, 0xf2), random(40))
    .map(([code, rest]) => Uint8Array.of(code, ...rest));
  it('decodeSense', () => {
    fc.assert(
      fc.property(
        fc.oneof(random(40), senseBiased, mutated(senseInput.map(encodeSense))),
        (bytes) => {
          total(bytes.length, () => decodeSense(bytes));
        },
      ),
      RUNS,
    );
  });

  const cdbBiased = fc
    .tuple(fc.constantFrom(0x03, 0x12, 0x5e, 0xa0), random(13))
    .map(([op, rest]) => Uint8Array.of(op, ...rest));
  it('decodePrinCdb, decodeInquiryCdb, decodeReportLunsCdb, decodeRequestSenseCdb', () => {
    fc.assert(
      fc.property(fc.oneof(random(14), cdbBiased), (cdb) => {
        total(cdb.length, () => decodePrinCdb(cdb));
        total(cdb.length, () => decodeInquiryCdb(cdb));
        total(cdb.length, () => decodeReportLunsCdb(cdb));
        total(cdb.length, () => decodeRequestSenseCdb(cdb));
      }),
      RUNS,
    );
  });

  const vpdBiased = fc
    .tuple(fc.nat({ max: 255 }), fc.constantFrom(0x00, 0x80, 0x83), fc.nat({ max: 80 }), random(80))
    .map(([b0, page, length, rest]) => Uint8Array.of(b0, page, 0, length, ...rest));
  const inquiryValid = fc.oneof(
    standardInquiry.map(encodeStandardInquiry),
    fc
      .array(fc.nat({ max: 255 }), { maxLength: 8 })
      .map((pages) => encodeSupportedVpdPages(1, pages)),
    serial.map((s) => encodeUnitSerialNumber(8, s)),
    fc.array(designator, { maxLength: 4 }).map((d) => encodeDeviceIdentification(8, d)),
  );
  it('decodeStandardInquiry, decodeVpdHeader, decodeSupportedVpdPages, decodeUnitSerialNumber, decodeDeviceIdentification', () => {
    fc.assert(
      fc.property(fc.oneof(random(80), vpdBiased, mutated(inquiryValid)), (bytes) => {
        total(bytes.length, () => decodeStandardInquiry(bytes));
        total(bytes.length, () => decodeVpdHeader(bytes));
        total(bytes.length, () => decodeSupportedVpdPages(bytes));
        total(bytes.length, () => decodeUnitSerialNumber(bytes));
        total(bytes.length, () => decodeDeviceIdentification(bytes));
      }),
      RUNS,
    );
  });

  it('decodeReportLunsData', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          random(56),
          mutated(fc.array(fc.nat({ max: 0x3fff }), { maxLength: 5 }).map(encodeReportLunsData)),
        ),
        (bytes) => {
          total(bytes.length, () => decodeReportLunsData(bytes));
        },
      ),
      RUNS,
    );
  });

  it('classifyResponse never throws', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 255 }),
        fc.nat({ max: 0xffff }),
        fc.nat({ max: 0xffff }),
        fc.oneof(random(32), senseBiased),
        (status, hostStatus, driverStatus, sense) => {
          check(
            typeof classifyResponse({ status, hostStatus, driverStatus, sense }).kind === 'string',
            'no kind',
          );
        },
      ),
      RUNS,
    );
  });
});
