// The sg3_utils-verified vectors of scsi-pr.md §13, byte for byte.
import { describe, expect, it } from 'vitest';
import {
  classifyResponse,
  decodeCapabilities,
  decodeDeviceIdentification,
  decodeFullStatus,
  decodePrinCdb,
  decodeProut,
  decodeProutCdb,
  decodeProutParameters,
  decodeReadKeys,
  decodeReadReservation,
  decodeSense,
  decodeStandardInquiry,
  decodeSupportedVpdPages,
  decodeUnitSerialNumber,
  describeSense,
  encodeCapabilities,
  encodeDeviceIdentification,
  encodeFullStatus,
  encodePrin,
  encodeProut,
  encodeReadKeys,
  encodeReadReservation,
  encodeSense,
  encodeStandardInquiry,
  encodeSupportedVpdPages,
  encodeUnitSerialNumber,
  formatDesignator,
  formatTransportId,
  fromHex,
  luIdentity,
  relativeTargetPortOf,
  targetPortGroupOf,
  toHex,
  type ProutBasic,
  type ProutRequest,
  type TransportId,
} from '../../src/scsi/index.js';

const K1 = 0x1122334455667788n;
const K2 = 0xaabbccddeeff0011n;
const hex = (s: string): string => s.replace(/\s+/g, '').toLowerCase();
const zeros = (n: number): string => '00'.repeat(n);

const basic = (over: Partial<ProutBasic>): ProutBasic => ({
  serviceAction: 0,
  scope: 0,
  type: 0,
  reservationKey: 0n,
  serviceActionKey: 0n,
  specIPt: [],
  allTgPt: false,
  aptpl: false,
  ...over,
});

const SAS: TransportId = { protocol: 'sas', sasAddress: 0x5000c50012345678n };
const FC: TransportId = { protocol: 'fc', wwpn: 0x21000024ff123456n };
const ISCSI: TransportId = { protocol: 'iscsi', name: 'iqn.1994-05.com.example:host1' };
const ISCSI_ISID: TransportId = {
  protocol: 'iscsi',
  name: 'iqn.1994-05.com.example:host1',
  isid: '23d000000001',
};
const iqnHex = toHex(Uint8Array.from('iqn.1994-05.com.example:host1', (c) => c.charCodeAt(0)));
const isidHex = toHex(Uint8Array.from(',i,0x23d000000001', (c) => c.charCodeAt(0)));

describe('PROUT vectors V1–V14 (scsi-pr.md §13.1, §13.2)', () => {
  const v1Params = zeros(8) + '1122334455667788' + zeros(8);
  const k1Only = '1122334455667788' + zeros(16);
  const cases: { name: string; req: ProutRequest; cdb: string; params: string }[] = [
    {
      name: 'V1 REGISTER 0 → K1',
      req: basic({ serviceActionKey: K1 }),
      cdb: '5f000000000000001800',
      params: v1Params,
    },
    {
      name: 'V2 REGISTER with APTPL',
      req: basic({ serviceActionKey: K1, aptpl: true }),
      cdb: '5f000000000000001800',
      params: zeros(8) + '1122334455667788' + '00000000' + '01' + '000000',
    },
    {
      name: 'V3 REGISTER with ALL_TG_PT',
      req: basic({ serviceActionKey: K1, allTgPt: true }),
      cdb: '5f000000000000001800',
      params: zeros(8) + '1122334455667788' + '00000000' + '04' + '000000',
    },
    {
      name: 'V4 REGISTER AND IGNORE EXISTING KEY',
      req: basic({ serviceAction: 6, serviceActionKey: K1 }),
      cdb: '5f060000000000001800',
      params: v1Params,
    },
    {
      name: 'V5 unregister K1',
      req: basic({ reservationKey: K1 }),
      cdb: '5f000000000000001800',
      params: k1Only,
    },
    {
      name: 'V6 RESERVE WE',
      req: basic({ serviceAction: 1, type: 1, reservationKey: K1 }),
      cdb: '5f010100000000001800',
      params: k1Only,
    },
    {
      name: 'V7 RELEASE WE',
      req: basic({ serviceAction: 2, type: 1, reservationKey: K1 }),
      cdb: '5f020100000000001800',
      params: k1Only,
    },
    {
      name: 'V8 PREEMPT K1 by K2, EA',
      req: basic({ serviceAction: 4, type: 3, reservationKey: K2, serviceActionKey: K1 }),
      cdb: '5f040300000000001800',
      params: 'aabbccddeeff0011' + '1122334455667788' + zeros(8),
    },
    {
      name: 'V9 PREEMPT AND ABORT',
      req: basic({ serviceAction: 5, type: 3, reservationKey: K2, serviceActionKey: K1 }),
      cdb: '5f050300000000001800',
      params: 'aabbccddeeff0011' + '1122334455667788' + zeros(8),
    },
    {
      name: 'V10 CLEAR',
      req: basic({ serviceAction: 3, reservationKey: K1 }),
      cdb: '5f030000000000001800',
      params: k1Only,
    },
    {
      name: 'V11 SPEC_I_PT SAS',
      req: basic({ serviceActionKey: K1, specIPt: [SAS] }),
      cdb: '5f000000000000003400',
      params: hex(`00 00 00 00 00 00 00 00 11 22 33 44 55 66 77 88
        00 00 00 00 08 00 00 00 00 00 00 18 06 00 00 00
        50 00 c5 00 12 34 56 78 00 00 00 00 00 00 00 00
        00 00 00 00`),
    },
    {
      name: 'V12 SPEC_I_PT FC',
      req: basic({ serviceActionKey: K1, specIPt: [FC] }),
      cdb: '5f000000000000003400',
      params:
        zeros(8) +
        '1122334455667788' +
        '0000000008000000' +
        '00000018' +
        hex('00 00 00 00 00 00 00 00 21 00 00 24 ff 12 34 56 00 00 00 00 00 00 00 00'),
    },
    {
      name: 'V13 SPEC_I_PT iSCSI',
      req: basic({ serviceActionKey: K1, specIPt: [ISCSI] }),
      cdb: '5f000000000000004000',
      params:
        zeros(8) +
        '1122334455667788' +
        '0000000008000000' +
        '00000024' +
        '05000020' +
        iqnHex +
        zeros(3),
    },
    {
      name: 'V13b SPEC_I_PT iSCSI with ISID',
      req: basic({ serviceActionKey: K1, specIPt: [ISCSI_ISID] }),
      cdb: '5f000000000000005000',
      params:
        zeros(8) +
        '1122334455667788' +
        '0000000008000000' +
        '00000034' +
        '45000030' +
        iqnHex +
        isidHex +
        zeros(2),
    },
    {
      name: 'V14 REGISTER AND MOVE',
      req: {
        serviceAction: 7,
        scope: 0,
        type: 0,
        reservationKey: K1,
        serviceActionKey: 0x0102030405060708n,
        unreg: true,
        aptpl: false,
        relativeTargetPort: 2,
        transportId: { protocol: 'sas', sasAddress: 0x5000c50012345679n },
      },
      cdb: '5f070000000000003000',
      params: hex(`11 22 33 44 55 66 77 88 01 02 03 04 05 06 07 08
        00 02 00 02 00 00 00 18 06 00 00 00 50 00 c5 00
        12 34 56 79 00 00 00 00 00 00 00 00 00 00 00 00`),
    },
  ];

  it.each(cases)('$name encodes exactly as sg_persist sends it', ({ req, cdb, params }) => {
    const out = encodeProut(req);
    expect(toHex(out.cdb)).toBe(cdb);
    expect(toHex(out.parameters)).toBe(params);
  });

  it.each(cases)('$name decodes back to the request', ({ req, cdb, params }) => {
    expect(decodeProut(fromHex(cdb), fromHex(params))).toEqual(req);
  });

  it('V11 exposes the raw SPEC_I_PT fields on the target side', () => {
    const p = decodeProutParameters(0, fromHex(cases[10]!.params));
    expect(p).toMatchObject({
      kind: 'basic',
      specIPtFlag: true,
      transportIdParameterDataLength: 24,
      transportIds: [SAS],
    });
    expect(decodeProutCdb(fromHex(cases[10]!.cdb))).toEqual({
      serviceAction: 0,
      scope: 0,
      type: 0,
      parameterListLength: 0x34,
      control: 0,
    });
  });

  it('V14 exposes the TransportID lengths of REGISTER AND MOVE', () => {
    const p = decodeProutParameters(7, fromHex(cases[14]!.params));
    expect(p).toMatchObject({
      kind: 'move',
      transportIdParameterDataLength: 24,
      transportIdLength: 24,
      unreg: true,
    });
  });
});

describe('PRIN CDB vectors V15–V19 (scsi-pr.md §13.3)', () => {
  it.each([
    [0, 0x2000, '5e000000000000200000'],
    [1, 0x2000, '5e010000000000200000'],
    [2, 0x2000, '5e020000000000200000'],
    [3, 0x2000, '5e030000000000200000'],
    [0, 8, '5e000000000000000800'],
  ])('service action %i, allocation length %i → %s', (sa, alloc, cdb) => {
    expect(toHex(encodePrin(sa, alloc))).toBe(cdb);
    expect(decodePrinCdb(fromHex(cdb))).toEqual({
      serviceAction: sa,
      allocationLength: alloc,
      control: 0,
    });
  });
});

describe('PRIN response vectors R1–R8 (scsi-pr.md §13.4)', () => {
  const R1 = '0000000500000010' + '1122334455667788' + 'aabbccddeeff0011';

  it('R1 READ KEYS: generation 5, two keys', () => {
    expect(decodeReadKeys(fromHex(R1))).toEqual({
      generation: 5,
      additionalLength: 16,
      keys: [K1, K2],
      truncated: false,
    });
    expect(toHex(encodeReadKeys({ generation: 5, keys: [K1, K2] }))).toBe(R1);
  });

  it('R2 READ KEYS: no registered keys', () => {
    expect(decodeReadKeys(fromHex('0000000500000000'))).toEqual({
      generation: 5,
      additionalLength: 0,
      keys: [],
      truncated: false,
    });
    expect(toHex(encodeReadKeys({ generation: 5, keys: [] }))).toBe('0000000500000000');
  });

  it('R3 READ KEYS cut to 8 bytes keeps the full additional length and reports truncation', () => {
    expect(decodeReadKeys(fromHex(R1).subarray(0, 8))).toEqual({
      generation: 5,
      additionalLength: 16,
      keys: [],
      truncated: true,
    });
  });

  it('R4 READ RESERVATION: K1, LU_SCOPE, Write Exclusive', () => {
    const r4 = '0000000600000010' + '1122334455667788' + '0000000000010000';
    expect(decodeReadReservation(fromHex(r4))).toEqual({
      generation: 6,
      additionalLength: 16,
      reservation: { key: K1, scope: 0, type: 1 },
      truncated: false,
    });
    expect(
      toHex(encodeReadReservation({ generation: 6, reservation: { key: K1, scope: 0, type: 1 } })),
    ).toBe(r4);
  });

  it('R5 READ RESERVATION: no reservation', () => {
    expect(decodeReadReservation(fromHex('0000000600000000'))).toEqual({
      generation: 6,
      additionalLength: 0,
      reservation: null,
      truncated: false,
    });
    expect(toHex(encodeReadReservation({ generation: 6, reservation: null }))).toBe(
      '0000000600000000',
    );
  });

  it('R6 READ RESERVATION: key 0, Exclusive Access all registrants', () => {
    const r6 = '0000000900000010' + zeros(8) + '0000000000080000';
    expect(decodeReadReservation(fromHex(r6)).reservation).toEqual({ key: 0n, scope: 0, type: 8 });
    expect(
      toHex(encodeReadReservation({ generation: 9, reservation: { key: 0n, scope: 0, type: 8 } })),
    ).toBe(r6);
  });

  it.each([
    {
      name: 'R7a LIO with APTPL active',
      bytes: '00081d91ea010000',
      caps: {
        rlrC: false,
        crh: true,
        sipC: true,
        atpC: true,
        ptplC: true,
        tmv: true,
        allowCommands: 1,
        ptplA: true,
        supportedTypes: [1, 3, 5, 6, 7, 8],
      },
    },
    {
      name: 'R7b types 1/3/5/6 only',
      bytes: '000811806a000000',
      caps: {
        rlrC: false,
        crh: true,
        sipC: false,
        atpC: false,
        ptplC: true,
        tmv: true,
        allowCommands: 0,
        ptplA: false,
        supportedTypes: [1, 3, 5, 6],
      },
    },
    {
      name: 'R7c HP-drive pattern',
      bytes: '0008198048010000',
      caps: {
        rlrC: false,
        crh: true,
        sipC: true,
        atpC: false,
        ptplC: true,
        tmv: true,
        allowCommands: 0,
        ptplA: false,
        supportedTypes: [3, 6, 8],
      },
    },
  ])('$name decodes every bit and re-encodes', ({ bytes, caps }) => {
    expect(decodeCapabilities(fromHex(bytes))).toEqual({ length: 8, ...caps, truncated: false });
    expect(toHex(encodeCapabilities(caps))).toBe(bytes);
  });

  it('R8 READ FULL STATUS: iSCSI holder and SAS ALL_TG_PT registrant', () => {
    const r8 = hex(`00 00 00 07 00 00 00 6c
      11 22 33 44 55 66 77 88 00 00 00 00 01 01 00 00 00 00 00 01 00 00 00 24
      05 00 00 20 69 71 6e 2e 31 39 39 34 2d 30 35 2e 63 6f 6d 2e
      65 78 61 6d 70 6c 65 3a 68 6f 73 74 31 00 00 00
      aa bb cc dd ee ff 00 11 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 18
      06 00 00 00 50 00 c5 00 12 34 56 78 00 00 00 00 00 00 00 00 00 00 00 00`);
    const expected = {
      generation: 7,
      additionalLength: 0x6c,
      descriptors: [
        {
          reservationKey: K1,
          allTgPt: false,
          holder: true,
          scope: 0,
          type: 1,
          relativeTargetPort: 1,
          transportId: ISCSI,
        },
        {
          reservationKey: K2,
          allTgPt: true,
          holder: false,
          scope: 0,
          type: 0,
          relativeTargetPort: 0,
          transportId: SAS,
        },
      ],
      truncated: false,
    };
    expect(r8.length / 2).toBe(116);
    const decoded = decodeFullStatus(fromHex(r8));
    expect(decoded).toEqual(expected);
    expect(decoded.descriptors.map((d) => formatTransportId(d.transportId))).toEqual([
      'iscsi:iqn.1994-05.com.example:host1',
      'sas:0x5000c50012345678',
    ]);
    expect(toHex(encodeFullStatus(expected))).toBe(r8);
  });
});

describe('sense vectors S1–S12 (scsi-pr.md §13.5)', () => {
  const fixed = (key: string, asc: string, ascq: string): string =>
    `7000${key}00000000 0a 00000000 ${asc}${ascq} 00 000000`.replace(/\s/g, '');
  const cases = [
    {
      name: 'S1',
      bytes: '700005000000000a00000000240000c00002',
      sense: {
        format: 'fixed',
        deferred: false,
        senseKey: 5,
        asc: 0x24,
        ascq: 0,
        fieldPointer: { inCdb: true, byte: 2 },
      },
      text: 'ILLEGAL REQUEST: invalid field in cdb (command byte 2)',
    },
    {
      name: 'S2',
      bytes: '700005000000000a000000002600008b0014',
      sense: {
        format: 'fixed',
        senseKey: 5,
        asc: 0x26,
        ascq: 0,
        fieldPointer: { inCdb: false, byte: 20, bit: 3 },
      },
      text: 'ILLEGAL REQUEST: invalid field in parameter list (parameter byte 20 bit 3)',
    },
    {
      name: 'S3',
      bytes: fixed('05', '1a', '00'),
      sense: { senseKey: 5, asc: 0x1a, ascq: 0 },
      text: 'ILLEGAL REQUEST: parameter list length error',
    },
    {
      name: 'S4',
      bytes: fixed('05', '26', '04'),
      sense: { senseKey: 5, asc: 0x26, ascq: 4 },
      text: 'ILLEGAL REQUEST: invalid release of persistent reservation',
    },
    {
      name: 'S5',
      bytes: fixed('05', '55', '04'),
      sense: { senseKey: 5, asc: 0x55, ascq: 4 },
      text: 'ILLEGAL REQUEST: insufficient registration resources',
    },
    {
      name: 'S6',
      bytes: fixed('05', '2c', '00'),
      sense: { senseKey: 5, asc: 0x2c, ascq: 0 },
      text: 'ILLEGAL REQUEST: command sequence error',
    },
    {
      name: 'S7',
      bytes: fixed('06', '2a', '03'),
      sense: { senseKey: 6, asc: 0x2a, ascq: 3 },
      text: 'UNIT ATTENTION: reservations preempted',
    },
    {
      name: 'S8',
      bytes: fixed('06', '2a', '04'),
      sense: { senseKey: 6, asc: 0x2a, ascq: 4 },
      text: 'UNIT ATTENTION: reservations released',
    },
    {
      name: 'S9',
      bytes: '72062a0500000000',
      sense: { format: 'descriptor', deferred: false, senseKey: 6, asc: 0x2a, ascq: 5 },
      text: 'UNIT ATTENTION: registrations preempted',
    },
    {
      name: 'S10',
      bytes: '7205200000000000',
      sense: { format: 'descriptor', senseKey: 5, asc: 0x20, ascq: 0 },
      text: 'ILLEGAL REQUEST: invalid command operation code',
    },
    {
      name: 'S11',
      bytes: '72052400000000080206000 0c0000200'.replace(/\s/g, ''),
      sense: {
        format: 'descriptor',
        senseKey: 5,
        asc: 0x24,
        ascq: 0,
        fieldPointer: { inCdb: true, byte: 2 },
      },
      text: 'ILLEGAL REQUEST: invalid field in cdb (command byte 2)',
    },
    {
      name: 'S12',
      bytes: '710006000000000a00000000290000000000',
      sense: {
        format: 'fixed',
        deferred: true,
        responseCode: 0x71,
        senseKey: 6,
        asc: 0x29,
        ascq: 0,
      },
      text: 'UNIT ATTENTION: power on, reset, or bus device reset occurred (deferred)',
    },
  ];

  it.each(cases)(
    '$name decodes to the sg_decode_sense fields and words',
    ({ bytes, sense, text }) => {
      const s = decodeSense(fromHex(bytes));
      expect(s).toMatchObject(sense);
      expect(describeSense(s)).toBe(text);
      if (!('fieldPointer' in sense)) expect(s.fieldPointer).toBeUndefined();
    },
  );

  it.each(cases)('$name is what encodeSense writes for the same fields', ({ bytes, sense }) => {
    const s = decodeSense(fromHex(bytes));
    const again = encodeSense({
      senseKey: s.senseKey,
      asc: s.asc,
      ascq: s.ascq,
      format: s.format,
      deferred: s.deferred,
      ...(s.fieldPointer ? { fieldPointer: s.fieldPointer } : {}),
    });
    expect(toHex(again)).toBe(bytes);
    expect(sense.senseKey).toBe(s.senseKey);
  });
});

describe('INQUIRY/VPD vectors I1–I4 (scsi-pr.md §13.6)', () => {
  const ascii = (s: string): string => toHex(Uint8Array.from(s, (c) => c.charCodeAt(0)));

  it('I1 standard INQUIRY of a SuperLoader-like changer', () => {
    const i1 =
      '088003021f000000' + ascii('QUANTUM ') + ascii('UHDL' + ' '.repeat(12)) + ascii('0001');
    const inq = {
      peripheralQualifier: 0,
      peripheralDeviceType: 8,
      rmb: true,
      version: 3,
      responseDataFormat: 2,
      additionalLength: 31,
      tpgs: 0,
      mchngr: false,
      multip: false,
      vendor: 'QUANTUM',
      product: 'UHDL',
      revision: '0001',
    };
    expect(decodeStandardInquiry(fromHex(i1))).toEqual({ ...inq, truncated: false });
    expect(toHex(encodeStandardInquiry(inq))).toBe(i1);
  });

  it('I2 supported VPD pages 00h, 80h, 83h', () => {
    expect(decodeSupportedVpdPages(fromHex('08000003008083'))).toEqual([0x00, 0x80, 0x83]);
    expect(toHex(encodeSupportedVpdPages(8, [0x00, 0x80, 0x83]))).toBe('08000003008083');
  });

  it('I3 unit serial number', () => {
    const i3 = '0880000e' + ascii('PM0000000001XY');
    expect(decodeUnitSerialNumber(fromHex(i3))).toBe('PM0000000001XY');
    expect(toHex(encodeUnitSerialNumber(8, 'PM0000000001XY'))).toBe(i3);
  });

  it('I4 device identification: LU and target-port designators', () => {
    const t10 = 'QUANTUM UHDL            PM0000000001XY';
    expect(t10.length).toBe(38);
    const i4 =
      '0883005e' +
      '02010026' +
      ascii(t10) +
      '010200080014c3000000beef' +
      '01030008' +
      '5000e11100000001' +
      '6194000400000002' +
      '6195000400000001' +
      '61930008' +
      '5000e11100000003';
    const designators = decodeDeviceIdentification(fromHex(i4));
    expect(designators.map((d) => formatDesignator(d))).toEqual([
      `t10.${t10}`,
      'eui.0014c3000000beef',
      'naa.5000e11100000001',
      'rtp.2',
      'tpg.1',
      'naa.5000e11100000003',
    ]);
    expect(
      designators.map((d) => [d.codeSet, d.piv, d.association, d.designatorType, d.protocolId]),
    ).toEqual([
      [2, false, 0, 1, undefined],
      [1, false, 0, 2, undefined],
      [1, false, 0, 3, undefined],
      [1, true, 1, 4, 6],
      [1, true, 1, 5, 6],
      [1, true, 1, 3, 6],
    ]);
    expect(
      luIdentity({ designators, vendor: 'QUANTUM', product: 'UHDL', serial: 'PM0000000001XY' }),
    ).toBe('naa.5000e11100000001');
    expect(relativeTargetPortOf(designators)).toBe(2);
    expect(targetPortGroupOf(designators)).toBe(1);
    expect(toHex(encodeDeviceIdentification(8, designators))).toBe(i4);
  });
});

describe('status vectors (scsi-pr.md §13.7) through classifyResponse', () => {
  const S1 = fromHex('700005000000000a00000000240000c00002');
  const S7 = fromHex('700006000000000a000000002a0300000000');
  const S10 = fromHex('7205200000000000');
  const none = new Uint8Array(0);
  it.each([
    { status: 0x18, hostStatus: 0, driverStatus: 0, sense: none, kind: 'reservation-conflict' },
    { status: 0x18, hostStatus: 0x11, driverStatus: 0, sense: none, kind: 'reservation-conflict' },
    { status: 0x00, hostStatus: 0x11, driverStatus: 0, sense: none, kind: 'reservation-conflict' },
    { status: 0x02, hostStatus: 0, driverStatus: 0x08, sense: S1, kind: 'check-condition' },
    { status: 0x02, hostStatus: 0, driverStatus: 0x08, sense: S7, kind: 'unit-attention' },
    { status: 0x02, hostStatus: 0, driverStatus: 0x08, sense: S10, kind: 'check-condition' },
    { status: 0x08, hostStatus: 0, driverStatus: 0, sense: none, kind: 'busy' },
    { status: 0x28, hostStatus: 0, driverStatus: 0, sense: none, kind: 'task-set-full' },
    { status: 0x40, hostStatus: 0, driverStatus: 0, sense: none, kind: 'task-aborted' },
    { status: 0x30, hostStatus: 0, driverStatus: 0, sense: none, kind: 'other-status' },
    { status: 0x00, hostStatus: 0x03, driverStatus: 0, sense: none, kind: 'timeout' },
    { status: 0x00, hostStatus: 0x01, driverStatus: 0, sense: none, kind: 'transport-error' },
    { status: 0x00, hostStatus: 0, driverStatus: 0, sense: none, kind: 'good' },
  ])('status $status host $hostStatus → $kind', ({ kind, ...response }) => {
    const c = classifyResponse(response);
    expect(c.kind).toBe(kind);
    if (response.sense.length > 0) expect(c.sense).toEqual(decodeSense(response.sense));
  });

  it('keeps a CHECK CONDITION without readable sense as check-condition with the decode error', () => {
    const c = classifyResponse({
      status: 2,
      hostStatus: 0,
      driverStatus: 0,
      sense: new Uint8Array(0),
    });
    expect(c.kind).toBe('check-condition');
    expect(c.senseError?.field).toBe('response code');
  });
});
