// Names, CDB builders and identity helpers: exact bytes and exact words.
import { describe, expect, it } from 'vitest';
import {
  prTypeWords,
  cdbLength,
  classifyResponse,
  decodeInquiryCdb,
  decodeReportLunsCdb,
  decodeRequestSenseCdb,
  decodeSense,
  decodeTransportId,
  decodeUnitSerialNumber,
  describeAsc,
  describeSense,
  encodeExchangeMedium,
  encodeInitializeElementStatus,
  encodeInquiry,
  encodeLogSense,
  encodeModeSense6,
  encodeMoveMedium,
  encodePositionToElement,
  encodePreventAllowMediumRemoval,
  encodeRead10,
  encodeRead6,
  encodeReadCapacity10,
  encodeReadElementStatus,
  encodeRelease10,
  encodeRelease6,
  encodeReportLuns,
  encodeRequestSense,
  encodeReserve10,
  encodeReserve6,
  encodeSense,
  encodeTestUnitReady,
  encodeTransportId,
  encodeWrite10,
  encodeWrite6,
  formatDesignator,
  formatKey,
  formatTransportId,
  fromHex,
  hostStatusName,
  isAllRegistrantsType,
  isKey,
  isPrType,
  isRegistrantsOnlyType,
  luIdentity,
  MAX_KEY,
  opcodeName,
  parseKey,
  parseTransportId,
  peripheralTypeName,
  prinSaName,
  protocolIdName,
  proutSaName,
  PrType,
  prTypeLongName,
  prTypeName,
  relativeTargetPortOf,
  ScsiDecodeError,
  ScsiEncodeError,
  scopeName,
  senseKeyName,
  statusName,
  targetPortGroupOf,
  toHex,
  transportIdEquals,
  type Designator,
  type TransportId,
} from '../../src/scsi/index.js';

describe('names', () => {
  it('names every reservation type short and long, and unknown ones by code', () => {
    expect(Object.values(PrType).map(prTypeName)).toEqual([
      'WE',
      'EA',
      'WE-RO',
      'EA-RO',
      'WE-AR',
      'EA-AR',
    ]);
    expect(prTypeName(9)).toBe('type 0x9');
    expect(prTypeWords(7)).toBe('WE-AR (7)');
    expect(prTypeWords(99)).toBe('0x63 (99, undefined)');
    expect(prTypeLongName(6)).toBe('Exclusive Access, registrants only');
    expect(prTypeLongName(0)).toBe('type 0x0');
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].filter(isPrType)).toEqual([1, 3, 5, 6, 7, 8]);
    expect([1, 3, 5, 6, 7, 8].filter(isAllRegistrantsType)).toEqual([7, 8]);
    expect([1, 3, 5, 6, 7, 8].filter(isRegistrantsOnlyType)).toEqual([5, 6]);
  });

  it('names service actions, scopes, statuses, sense keys, host statuses, device types and protocols', () => {
    expect(proutSaName(6)).toBe('REGISTER AND IGNORE EXISTING KEY');
    expect(proutSaName(8)).toBe('REPLACE LOST RESERVATION');
    expect(proutSaName(0x1f)).toBe('service action 0x1f');
    expect(prinSaName(3)).toBe('READ FULL STATUS');
    expect(prinSaName(4)).toBe('service action 0x4');
    expect([0, 1, 2].map(scopeName)).toEqual(['LU_SCOPE', 'scope 0x1', 'ELEMENT_SCOPE']);
    expect(statusName(0x18)).toBe('RESERVATION CONFLICT');
    expect(statusName(0x22)).toBe('status 0x22');
    expect(senseKeyName(5)).toBe('ILLEGAL REQUEST');
    expect(senseKeyName(0xc)).toBe('EQUAL');
    expect(senseKeyName(0x10)).toBe('sense key 0x10');
    expect(hostStatusName(0x11)).toBe('DID_NEXUS_FAILURE');
    expect(hostStatusName(0x20)).toBe('host status 0x20');
    expect(peripheralTypeName(8)).toBe('medium changer');
    expect(peripheralTypeName(1)).toBe('tape');
    expect(peripheralTypeName(0x15)).toBe('device type 0x15');
    expect(protocolIdName(6)).toBe('SAS');
    expect(protocolIdName(0xc)).toBe('protocol 0xc');
  });

  it('names opcodes after SPC with the CDB size in parentheses', () => {
    expect(opcodeName(0x5f)).toBe('PERSISTENT RESERVE OUT');
    expect(opcodeName(0x5e)).toBe('PERSISTENT RESERVE IN');
    expect(opcodeName(0x28)).toBe('READ(10)');
    expect(opcodeName(0x1a)).toBe('MODE SENSE(6)');
    expect(opcodeName(0xa5)).toBe('MOVE MEDIUM');
    expect(opcodeName(0xc1)).toBe('opcode 0xc1');
  });

  it('describes unknown ASC/ASCQ by code and deferred sense with a suffix', () => {
    expect(describeAsc(0x99, 0x01)).toBe('asc=0x99 ascq=0x1');
    expect(describeAsc(0x44, 0x01)).toBe('persistent reservation information lost');
    expect(
      describeSense(
        decodeSense(
          encodeSense({ senseKey: 6, asc: 0x29, ascq: 7, deferred: true, format: 'descriptor' }),
        ),
      ),
    ).toBe('UNIT ATTENTION: i_t nexus loss occurred (deferred)');
  });
});

describe('keys', () => {
  it('formats keys as 0x + 16 hex digits and parses hex or decimal', () => {
    expect(formatKey(0x77n)).toBe('0x0000000000000077');
    expect(formatKey(MAX_KEY)).toBe('0xffffffffffffffff');
    expect(parseKey('0x77')).toBe(0x77n);
    expect(parseKey(' 0XFF ')).toBe(0xffn);
    expect(parseKey('119')).toBe(119n);
    expect(parseKey('18446744073709551615')).toBe(MAX_KEY);
    expect(isKey(0n)).toBe(true);
    expect(isKey(MAX_KEY + 1n)).toBe(false);
    expect(isKey(1)).toBe(false);
  });
});

describe('CDB builders', () => {
  it.each([
    ['TEST UNIT READY', encodeTestUnitReady(), '000000000000'],
    [
      'standard INQUIRY of 36 bytes (scsi-pr.md §11.1)',
      encodeInquiry({ allocationLength: 36 }),
      '120000002400',
    ],
    [
      'INQUIRY VPD 83h',
      encodeInquiry({ evpd: true, pageCode: 0x83, allocationLength: 0xff }),
      '12018300ff00',
    ],
    ['REQUEST SENSE', encodeRequestSense(252), '03000000fc00'],
    ['REQUEST SENSE descriptor format', encodeRequestSense(252, true), '03010000fc00'],
    ['REPORT LUNS', encodeReportLuns(0, 0x1000), 'a00000000000000010000000'],
    ['READ(10)', encodeRead10({ lba: 0x12345678, transferLength: 1 }), '28001234567800000100'],
    ['WRITE(10)', encodeWrite10({ lba: 1, transferLength: 0x100 }), '2a000000000100010000'],
    [
      'READ(6) fixed, SILI',
      encodeRead6({ transferLength: 0x10000, fixed: true, sili: true }),
      '080301000000',
    ],
    ['WRITE(6) fixed', encodeWrite6({ transferLength: 1, fixed: true }), '0a0100000100'],
    ['RESERVE(6)', encodeReserve6(), '160000000000'],
    ['RELEASE(6)', encodeRelease6(), '170000000000'],
    ['RESERVE(10)', encodeReserve10(), '56000000000000000000'],
    ['RELEASE(10)', encodeRelease10(), '57000000000000000000'],
    [
      'MOVE MEDIUM with INVERT',
      encodeMoveMedium({
        transportElement: 0,
        sourceElement: 0x1000,
        destinationElement: 0x100,
        invert: true,
      }),
      'a50000001000010000000100',
    ],
    [
      'EXCHANGE MEDIUM',
      encodeExchangeMedium({
        transportElement: 0,
        sourceElement: 0x1000,
        firstDestinationElement: 0x100,
        secondDestinationElement: 0x101,
      }),
      'a60000001000010001010000',
    ],
    [
      'READ ELEMENT STATUS, VOLTAG, storage elements',
      encodeReadElementStatus({
        voltag: true,
        elementType: 2,
        startingElement: 0x1000,
        numberOfElements: 16,
        allocationLength: 0x10000,
      }),
      'b81210000010000100000000',
    ],
    [
      'READ ELEMENT STATUS defaults',
      encodeReadElementStatus({ numberOfElements: 1, allocationLength: 8 }),
      'b80000000001000000080000',
    ],
    ['INITIALIZE ELEMENT STATUS', encodeInitializeElementStatus(), '070000000000'],
    [
      'POSITION TO ELEMENT',
      encodePositionToElement({ transportElement: 0, destinationElement: 0x100 }),
      '2b000000010000000000',
    ],
    ['PREVENT MEDIUM REMOVAL', encodePreventAllowMediumRemoval(true), '1e0000000100'],
    ['ALLOW MEDIUM REMOVAL', encodePreventAllowMediumRemoval(false), '1e0000000000'],
    [
      'MODE SENSE(6) with DBD',
      encodeModeSense6({ dbd: true, pageCode: 0x1d, allocationLength: 0xff }),
      '1a081d00ff00',
    ],
    [
      'MODE SENSE(6) defaults',
      encodeModeSense6({ pageCode: 0x3f, subpageCode: 0xff, pageControl: 2, allocationLength: 4 }),
      '1a00bfff0400',
    ],
    [
      'LOG SENSE cumulative',
      encodeLogSense({ pageCode: 0x0d, allocationLength: 0x100 }),
      '4d004d00000000010000',
    ],
    [
      'LOG SENSE current with subpage',
      encodeLogSense({ pageControl: 0, pageCode: 0x0d, subpageCode: 1, allocationLength: 4 }),
      '4d000d01000000000400',
    ],
    ['READ CAPACITY(10)', encodeReadCapacity10(), '25000000000000000000'],
  ])('%s → %s', (_name, cdb, bytes) => {
    expect(toHex(cdb)).toBe(bytes);
    expect(cdb.length).toBe(cdbLength(cdb[0]!));
  });

  it('derives the CDB length from the group code', () => {
    expect([0x00, 0x28, 0x5e, 0x7f, 0x88, 0xa0, 0xc0, 0xe0].map(cdbLength)).toEqual([
      6,
      10,
      10,
      undefined,
      16,
      12,
      undefined,
      undefined,
    ]);
  });

  it('refuses to decode another command as INQUIRY, REPORT LUNS or REQUEST SENSE', () => {
    for (const decode of [decodeInquiryCdb, decodeReportLunsCdb, decodeRequestSenseCdb]) {
      expect(() => decode(encodeReadCapacity10())).toThrow(ScsiDecodeError);
    }
    expect(() => decodeInquiryCdb(fromHex('1200'))).toThrow(
      /cdb at byte 0 needs 6 bytes, only 2 present/,
    );
  });
});

describe('TransportID text forms and equality', () => {
  it('formats every protocol and parses it back', () => {
    const ids: [TransportId, string][] = [
      [{ protocol: 'sas', sasAddress: 0x5000c50012345678n }, 'sas:0x5000c50012345678'],
      [{ protocol: 'fc', wwpn: 0x21000024ff123456n }, 'fc:0x21000024ff123456'],
      [
        { protocol: 'iscsi', name: 'iqn.1994-05.com.example:host1' },
        'iscsi:iqn.1994-05.com.example:host1',
      ],
      [
        { protocol: 'iscsi', name: 'iqn.1994-05.com.example:host1', isid: '23d000000001' },
        'iscsi:iqn.1994-05.com.example:host1,i,0x23d000000001',
      ],
      [{ protocol: 'raw', bytes: fromHex('04' + '00'.repeat(23)) }, `raw:04${'00'.repeat(23)}`],
    ];
    for (const [t, text] of ids) {
      expect(formatTransportId(t)).toBe(text);
      expect(parseTransportId(text)).toEqual(t);
    }
  });

  it('accepts colon-separated port names, short hex and upper-case prefixes', () => {
    expect(parseTransportId('fc:21:00:00:24:ff:12:34:56')).toEqual({
      protocol: 'fc',
      wwpn: 0x21000024ff123456n,
    });
    expect(parseTransportId('SAS:5000C50012345678')).toEqual({
      protocol: 'sas',
      sasAddress: 0x5000c50012345678n,
    });
    expect(parseTransportId('sas:0x1')).toEqual({ protocol: 'sas', sasAddress: 1n });
    expect(parseTransportId('iscsi:iqn.a,I,0X23D000000001')).toEqual({
      protocol: 'iscsi',
      name: 'iqn.a',
      isid: '23d000000001',
    });
  });

  it('compares iSCSI names and ISIDs without regard to case, and nothing across protocols', () => {
    const a: TransportId = { protocol: 'iscsi', name: 'iqn.A', isid: '23D000000001' };
    expect(transportIdEquals(a, { protocol: 'iscsi', name: 'iqn.a', isid: '23d000000001' })).toBe(
      true,
    );
    expect(transportIdEquals(a, { protocol: 'iscsi', name: 'iqn.a' })).toBe(false);
    expect(
      transportIdEquals({ protocol: 'sas', sasAddress: 1n }, { protocol: 'fc', wwpn: 1n }),
    ).toBe(false);
    expect(
      transportIdEquals({ protocol: 'fc', wwpn: 1n }, { protocol: 'sas', sasAddress: 1n }),
    ).toBe(false);
    expect(
      transportIdEquals(
        { protocol: 'raw', bytes: fromHex('0102') },
        { protocol: 'raw', bytes: fromHex('0103') },
      ),
    ).toBe(false);
    expect(
      transportIdEquals(
        { protocol: 'raw', bytes: fromHex('0102') },
        { protocol: 'raw', bytes: fromHex('0102') },
      ),
    ).toBe(true);
    expect(
      transportIdEquals(
        { protocol: 'raw', bytes: fromHex('01') },
        { protocol: 'sas', sasAddress: 1n },
      ),
    ).toBe(false);
  });

  it('writes upper-case ISIDs in lower case and pads short iSCSI names to 24 bytes', () => {
    const bytes = encodeTransportId({ protocol: 'iscsi', name: 'iqn.a', isid: '23D000000001' });
    expect(decodeTransportId(bytes).transportId).toEqual({
      protocol: 'iscsi',
      name: 'iqn.a',
      isid: '23d000000001',
    });
    expect(encodeTransportId({ protocol: 'iscsi', name: 'a' })).toHaveLength(24);
  });

  it('decodes FC/SAS TransportIDs with a reserved format code as raw bytes', () => {
    const bytes = fromHex('46' + '00'.repeat(23));
    expect(decodeTransportId(bytes)).toEqual({
      transportId: { protocol: 'raw', bytes },
      length: 24,
    });
  });
});

describe('designators and LU identity (scsi-pr.md §11.3)', () => {
  const d = (designatorType: number, value: string, association = 0, codeSet = 1): Designator => ({
    codeSet,
    piv: false,
    association,
    designatorType,
    value: fromHex(value),
  });
  const ascii = (s: string): string => toHex(Uint8Array.from(s, (c) => c.charCodeAt(0)));

  it('formats every designator type', () => {
    expect(
      [
        d(0, 'abcd'),
        d(6, '00000007'),
        d(7, '00112233'),
        d(8, ascii('naa.5000e111\0\0'), 0, 3),
        d(9, '0102'),
        d(0xa, '10ff'),
        d(0xb, '01'),
      ].map(formatDesignator),
    ).toEqual([
      'vendor.abcd',
      'lug.7',
      'md5.00112233',
      'name.naa.5000e111',
      'ppi.0102',
      'uuid.10ff',
      'type0xb.01',
    ]);
  });

  it('prefers NAA, then EUI-64, then SCSI name, then T10 vendor id, among LU designators only', () => {
    const t10 = d(1, ascii('QUANTUM UHDL    PM1'), 0, 2);
    const eui = d(2, '0014c3000000beef');
    const naaPort = d(3, '5000e11100000003', 1);
    const name = d(8, ascii('iqn.x'), 0, 3);
    const id = (designators: Designator[]): string =>
      luIdentity({ designators, vendor: 'QUANTUM ', product: 'UHDL', serial: ' PM1 ' });
    expect(id([t10, eui, naaPort, d(3, '5000e11100000001')])).toBe('naa.5000e11100000001');
    expect(id([t10, name, eui, naaPort])).toBe('eui.0014c3000000beef');
    expect(id([t10, name])).toBe('name.iqn.x');
    expect(id([t10])).toBe('t10.QUANTUM UHDL    PM1');
    expect(id([naaPort, d(0, 'abcd'), d(3, '')])).toBe('serial.QUANTUM.UHDL.PM1');
    expect(id([])).toBe('serial.QUANTUM.UHDL.PM1');
  });

  it('finds the relative target port and target port group of a path, or nothing', () => {
    expect(relativeTargetPortOf([d(4, '00000002', 0)])).toBeUndefined();
    expect(relativeTargetPortOf([d(4, '00000102', 1)])).toBe(0x102);
    expect(targetPortGroupOf([])).toBeUndefined();
    expect(formatDesignator(d(4, '00', 1))).toBe('rtp.0');
  });

  it('trims serial-number padding on both sides', () => {
    expect(decodeUnitSerialNumber(fromHex('01800008' + ascii('  AB12') + '0000'))).toBe('AB12');
  });
});

describe('classifyResponse edge cases', () => {
  it('treats DRIVER_SENSE with GOOD status and unreadable sense as good', () => {
    expect(
      classifyResponse({ status: 0, hostStatus: 0, driverStatus: 0x08, sense: fromHex('00') }).kind,
    ).toBe('good');
  });

  it('decodes sense when only driver_status says there is some', () => {
    const sense = encodeSense({ senseKey: 1, asc: 0x5d, ascq: 0 });
    expect(classifyResponse({ status: 0, hostStatus: 0, driverStatus: 0x08, sense })).toMatchObject(
      {
        kind: 'check-condition',
        sense: { senseKey: 1, asc: 0x5d },
      },
    );
  });
});

describe('error classes', () => {
  it('carry name, field, offset and cause', () => {
    const cause = new Error('inner');
    const d = new ScsiDecodeError('bad', 'additional length', 4, { cause });
    expect([d.name, d.field, d.offset, d.cause]).toEqual([
      'ScsiDecodeError',
      'additional length',
      4,
      cause,
    ]);
    const e = new ScsiEncodeError('invalid x');
    expect([e.name, e.field, e instanceof Error]).toEqual(['ScsiEncodeError', 'value', true]);
  });

  it('fromHex ignores spaces, colons and 0x, and rejects odd or non-hex input', () => {
    expect(toHex(fromHex('0x5f 00:18'))).toBe('5f0018');
    expect(() => fromHex('5f0')).toThrow(ScsiEncodeError);
    expect(() => fromHex('zz')).toThrow(/invalid hex/);
  });
});
