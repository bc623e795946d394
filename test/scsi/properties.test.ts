// Properties: every encoder round-trips through its decoder (style.md §8), and truncated data keeps the full
// announced length (scsi-pr.md §8.2).
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import {
  decodeCapabilities,
  decodeDeviceIdentification,
  decodeFullStatus,
  decodeInquiryCdb,
  decodePrinCdb,
  decodePrinData,
  decodeProut,
  decodeProutCdb,
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
  encodeInquiry,
  encodePrin,
  encodeProut,
  encodeReadKeys,
  encodeReadReservation,
  encodeReportLuns,
  encodeReportLunsData,
  encodeRequestSense,
  encodeSense,
  encodeStandardInquiry,
  encodeSupportedVpdPages,
  encodeTransportId,
  encodeUnitSerialNumber,
  formatKey,
  fromHex,
  formatTransportId,
  parseKey,
  parseTransportId,
  transportIdEquals,
} from '../../src/scsi/index.js';
import {
  capabilities,
  designator,
  fullStatusDescriptor,
  nibble,
  proutBasic,
  proutMove,
  senseInput,
  serial,
  standardInquiry,
  transportId,
  uint32,
  uint64,
} from './arbitraries.js';

describe('TransportIDs', () => {
  test.prop([transportId], { numRuns: 500 })(
    'decode(encode(t)) is t, and the length is the encoded length',
    (t) => {
      const bytes = encodeTransportId(t);
      const { transportId: back, length } = decodeTransportId(bytes);
      expect(back).toEqual(t);
      expect(length).toBe(bytes.length);
      expect(transportIdEquals(back, t)).toBe(true);
      if (t.protocol !== 'raw') {
        // SPC-4 7.6.4: at least 24 bytes, a multiple of 4.
        expect(bytes.length % 4).toBe(0);
        expect(bytes.length).toBeGreaterThanOrEqual(24);
      }
    },
  );

  test.prop([transportId, fc.uint8Array({ maxLength: 16 })], { numRuns: 300 })(
    'decodes at an offset inside a larger buffer',
    (t, prefix) => {
      const bytes = Uint8Array.from([...prefix, ...encodeTransportId(t), 0xee]);
      expect(decodeTransportId(bytes, prefix.length).transportId).toEqual(t);
    },
  );

  test.prop([transportId], { numRuns: 500 })('parseTransportId(formatTransportId(t)) is t', (t) => {
    expect(parseTransportId(formatTransportId(t))).toEqual(t);
  });
});

describe('PROUT', () => {
  test.prop([proutBasic], { numRuns: 500 })('basic and SPEC_I_PT requests round-trip', (req) => {
    const { cdb, parameters } = encodeProut(req);
    expect(decodeProut(cdb, parameters)).toEqual(req);
    expect(decodeProutCdb(cdb).parameterListLength).toBe(parameters.length);
    expect(parameters.length).toBe(req.specIPt.length === 0 ? 24 : parameters.length);
  });

  test.prop([proutMove], { numRuns: 300 })('REGISTER AND MOVE requests round-trip', (req) => {
    const { cdb, parameters } = encodeProut(req);
    expect(decodeProut(cdb, parameters)).toEqual(req);
    expect(cdb.length).toBe(10);
  });
});

describe('PRIN', () => {
  test.prop([fc.nat({ max: 0x1f }), fc.nat({ max: 0xffff }), fc.nat({ max: 255 })])(
    'CDB round-trips',
    (sa, alloc, control) => {
      expect(decodePrinCdb(encodePrin(sa, alloc, control))).toEqual({
        serviceAction: sa,
        allocationLength: alloc,
        control,
      });
    },
  );

  test.prop([uint32, fc.array(uint64, { maxLength: 20 })])(
    'READ KEYS data round-trips',
    (generation, keys) => {
      const bytes = encodeReadKeys({ generation, keys });
      expect(decodeReadKeys(bytes)).toEqual({
        generation,
        additionalLength: 8 * keys.length,
        keys,
        truncated: false,
      });
      expect(decodePrinData(0, bytes)).toEqual({ kind: 'read-keys', value: decodeReadKeys(bytes) });
    },
  );

  test.prop([
    uint32,
    fc.option(fc.record({ key: uint64, scope: nibble, type: nibble }), { nil: null }),
  ])('READ RESERVATION data round-trips', (generation, reservation) => {
    const bytes = encodeReadReservation({ generation, reservation });
    expect(decodeReadReservation(bytes)).toEqual({
      generation,
      additionalLength: reservation ? 16 : 0,
      reservation,
      truncated: false,
    });
    expect(decodePrinData(1, bytes).kind).toBe('read-reservation');
  });

  test.prop([capabilities])('REPORT CAPABILITIES data round-trips', (caps) => {
    const bytes = encodeCapabilities(caps);
    expect(decodeCapabilities(bytes)).toEqual({ length: 8, ...caps, truncated: false });
    expect(decodePrinData(2, bytes).kind).toBe('report-capabilities');
  });

  test.prop([uint32, fc.array(fullStatusDescriptor, { maxLength: 6 })], { numRuns: 300 })(
    'READ FULL STATUS data round-trips',
    (generation, descriptors) => {
      const bytes = encodeFullStatus({ generation, descriptors });
      expect(decodeFullStatus(bytes)).toEqual({
        generation,
        additionalLength: bytes.length - 8,
        descriptors,
        truncated: false,
      });
      expect(decodePrinData(3, bytes).kind).toBe('read-full-status');
    },
  );
});

describe('sense', () => {
  test.prop([senseInput], { numRuns: 500 })('fixed and descriptor sense round-trip', (input) => {
    const bytes = encodeSense(input);
    const s = decodeSense(bytes);
    expect(s).toMatchObject({
      format: input.format,
      deferred: input.deferred,
      senseKey: input.senseKey,
      asc: input.asc,
      ascq: input.ascq,
      filemark: input.filemark,
      eom: input.eom,
      ili: input.ili,
      valid: input.information !== undefined,
    });
    expect(s.fieldPointer).toEqual(input.fieldPointer);
    expect(s.information).toBe(input.information);
    if (input.format === 'fixed') expect(bytes.length).toBe(18);
  });
});

describe('INQUIRY and VPD', () => {
  test.prop([fc.boolean(), fc.nat({ max: 255 }), fc.nat({ max: 0xffff })])(
    'INQUIRY CDB round-trips',
    (evpd, pageCode, allocationLength) => {
      expect(decodeInquiryCdb(encodeInquiry({ evpd, pageCode, allocationLength }))).toEqual({
        evpd,
        pageCode,
        allocationLength,
        control: 0,
      });
    },
  );

  test.prop([standardInquiry])('standard INQUIRY data round-trips', (inq) => {
    expect(decodeStandardInquiry(encodeStandardInquiry(inq))).toEqual({ ...inq, truncated: false });
  });

  test.prop([fc.nat({ max: 31 }), fc.array(fc.nat({ max: 255 }), { maxLength: 40 })])(
    'VPD 00h round-trips',
    (pdt, pages) => {
      expect(decodeSupportedVpdPages(encodeSupportedVpdPages(pdt, pages))).toEqual(pages);
    },
  );

  test.prop([fc.nat({ max: 31 }), serial])('VPD 80h round-trips', (pdt, s) => {
    expect(decodeUnitSerialNumber(encodeUnitSerialNumber(pdt, s))).toBe(s);
  });

  test.prop([fc.nat({ max: 31 }), fc.array(designator, { maxLength: 8 })])(
    'VPD 83h round-trips',
    (pdt, designators) => {
      expect(decodeDeviceIdentification(encodeDeviceIdentification(pdt, designators))).toEqual(
        designators,
      );
    },
  );
});

describe('REPORT LUNS', () => {
  test.prop([fc.nat({ max: 255 }), uint32])('CDB round-trips', (selectReport, allocationLength) => {
    expect(decodeReportLunsCdb(encodeReportLuns(selectReport, allocationLength))).toEqual({
      selectReport,
      allocationLength,
      control: 0,
    });
  });

  test.prop([fc.array(fc.nat({ max: 0x3fff }), { maxLength: 30 })])(
    'LUN data round-trips',
    (luns) => {
      expect(decodeReportLunsData(encodeReportLunsData(luns))).toEqual({
        lunListLength: 8 * luns.length,
        luns,
        truncated: false,
      });
    },
  );
});

describe('keys and small CDBs', () => {
  test.prop([uint64])('parseKey(formatKey(k)) is k; formatKey is 0x + 16 hex digits', (k) => {
    const text = formatKey(k);
    expect(text).toMatch(/^0x[0-9a-f]{16}$/);
    expect(parseKey(text)).toBe(k);
    expect(parseKey(k.toString())).toBe(k);
  });

  test.prop([fc.nat({ max: 255 }), fc.boolean()])(
    'REQUEST SENSE CDB round-trips',
    (alloc, desc) => {
      expect(decodeRequestSenseCdb(encodeRequestSense(alloc, desc))).toEqual({
        desc,
        allocationLength: alloc,
        control: 0,
      });
    },
  );
});

const K1 = 0x1122334455667788n;

describe('truncated data keeps the full announced length', () => {
  test.prop([uint32, fc.array(uint64, { minLength: 1, maxLength: 12 }), fc.nat({ max: 0xffff })])(
    'READ KEYS cut by the allocation length lists only whole keys',
    (generation, keys, allocation) => {
      const full = encodeReadKeys({ generation, keys });
      const alloc = decodePrinCdb(
        encodePrin(0, Math.max(8, allocation % (full.length + 1))),
      ).allocationLength;
      const r = decodeReadKeys(full.subarray(0, alloc));
      expect(r.additionalLength).toBe(8 * keys.length);
      expect(r.truncated).toBe(alloc < full.length);
      expect(r.keys).toEqual(keys.slice(0, Math.floor((alloc - 8) / 8)));
    },
  );

  test.prop([uint32, fc.array(fullStatusDescriptor, { minLength: 1, maxLength: 4 }), fc.nat()], {
    numRuns: 200,
  })(
    'READ FULL STATUS cut anywhere lists only the descriptors that arrived whole',
    (generation, descriptors, cut) => {
      const full = encodeFullStatus({ generation, descriptors });
      const length = 8 + (cut % (full.length - 7));
      const r = decodeFullStatus(full.subarray(0, length));
      expect(r.additionalLength).toBe(full.length - 8);
      expect(r.truncated).toBe(length < full.length);
      let end = 8;
      const whole = descriptors.filter((d) => {
        end += 24 + encodeTransportId(d.transportId).length;
        return end <= length;
      });
      expect(r.descriptors).toEqual(whole);
    },
  );

  it('READ RESERVATION cut inside the descriptor reports no reservation yet, truncated', () => {
    const full = encodeReadReservation({
      generation: 4,
      reservation: { key: K1, scope: 0, type: 3 },
    });
    for (let length = 8; length < 24; length++) {
      expect(decodeReadReservation(full.subarray(0, length))).toEqual({
        generation: 4,
        additionalLength: 16,
        reservation: null,
        truncated: true,
      });
    }
  });

  it('REPORT CAPABILITIES cut short reads missing bytes as 0 and says so', () => {
    const full = encodeCapabilities({
      rlrC: true,
      crh: true,
      sipC: true,
      atpC: true,
      ptplC: true,
      tmv: true,
      allowCommands: 5,
      ptplA: true,
      supportedTypes: [1, 8],
    });
    expect(decodeCapabilities(full.subarray(0, 3))).toMatchObject({
      length: 8,
      rlrC: true,
      ptplC: true,
      tmv: false,
      supportedTypes: [],
      truncated: true,
    });
    expect(decodeCapabilities(full.subarray(0, 5))).toMatchObject({
      supportedTypes: [1],
      truncated: true,
    });
  });

  it('REPORT LUNS and VPD pages report truncation with the full length', () => {
    const luns = encodeReportLunsData([0, 1, 2, 300]);
    expect(decodeReportLunsData(luns.subarray(0, 20))).toEqual({
      lunListLength: 32,
      luns: [0],
      truncated: true,
    });
    const page = encodeSupportedVpdPages(8, [0, 0x80, 0x83]);
    expect(decodeVpdHeader(page.subarray(0, 5))).toMatchObject({ pageLength: 3, truncated: true });
    expect(decodeSupportedVpdPages(page.subarray(0, 5))).toEqual([0]);
    expect(decodeUnitSerialNumber(encodeUnitSerialNumber(1, 'ABC123').subarray(0, 7))).toBe('ABC');
  });

  test.prop([standardInquiry, fc.nat({ max: 30 })])(
    'standard INQUIRY cut short keeps what arrived',
    (inq, cut) => {
      const full = encodeStandardInquiry(inq);
      const r = decodeStandardInquiry(full.subarray(0, 5 + cut));
      expect(r.truncated).toBe(true);
      expect(r.additionalLength).toBe(31);
      expect(inq.vendor.startsWith(r.vendor)).toBe(true);
      expect(r.product).toBe(5 + cut > 16 ? inq.product.slice(0, 5 + cut - 16).trimEnd() : '');
    },
  );

  it('designators cut by the allocation length are dropped, whole ones kept', () => {
    const page = encodeDeviceIdentification(8, [
      {
        codeSet: 1,
        piv: false,
        association: 0,
        designatorType: 3,
        value: fromHex('5000e11100000001'),
      },
      {
        codeSet: 1,
        piv: false,
        association: 0,
        designatorType: 2,
        value: fromHex('0014c3000000beef'),
      },
    ]);
    expect(decodeDeviceIdentification(page.subarray(0, 20))).toHaveLength(1);
    expect(decodeDeviceIdentification(page.subarray(0, 17))).toHaveLength(1);
    expect(decodeDeviceIdentification(page.subarray(0, 18))).toHaveLength(1);
    expect(decodeDeviceIdentification(page.subarray(0, 6))).toHaveLength(0);
  });
});
