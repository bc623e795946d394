// Truncated data is reported with the full announced length; bad bytes name field and offset; encoders refuse
// out-of-range values with ScsiEncodeError.
import { describe, expect, it } from 'vitest';
import {
  decodeCapabilities,
  decodeDeviceIdentification,
  decodeFullStatus,
  decodePrinCdb,
  decodePrinData,
  decodeProut,
  decodeProutCdb,
  decodeProutParameters,
  decodeReadKeys,
  decodeReadReservation,
  decodeReportLunsData,
  decodeSense,
  decodeStandardInquiry,
  decodeTransportId,
  decodeVpdHeader,
  encodeCapabilities,
  encodeDeviceIdentification,
  encodeInquiry,
  encodePrin,
  encodeProut,
  encodeProutCdb,
  encodeReadKeys,
  encodeReadReservation,
  encodeReportLuns,
  encodeReportLunsData,
  encodeSense,
  encodeStandardInquiry,
  encodeSupportedVpdPages,
  encodeTransportId,
  formatKey,
  fromHex,
  parseKey,
  parseTransportId,
  ScsiDecodeError,
  ScsiEncodeError,
  type ProutBasic,
  type ProutMove,
  type TransportId,
} from '../../src/scsi/index.js';

/** Runs `fn` and returns the ScsiDecodeError it throws (fails the test otherwise). */
function decodeError(fn: () => unknown): ScsiDecodeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ScsiDecodeError);
    return e as ScsiDecodeError;
  }
  throw new Error('expected a ScsiDecodeError');
}

/** Runs `fn` and returns the ScsiEncodeError it throws (fails the test otherwise). */
function encodeError(fn: () => unknown): ScsiEncodeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ScsiEncodeError);
    return e as ScsiEncodeError;
  }
  throw new Error('expected a ScsiEncodeError');
}

const K1 = 0x1122334455667788n;
const SAS: TransportId = { protocol: 'sas', sasAddress: 0x5000c50012345678n };
const register: ProutBasic = {
  serviceAction: 0,
  scope: 0,
  type: 0,
  reservationKey: 0n,
  serviceActionKey: K1,
  specIPt: [],
  allTgPt: false,
  aptpl: false,
};
const move: ProutMove = {
  serviceAction: 7,
  scope: 0,
  type: 0,
  reservationKey: K1,
  serviceActionKey: 2n,
  unreg: false,
  aptpl: false,
  relativeTargetPort: 1,
  transportId: SAS,
};

describe('bad bytes give a ScsiDecodeError naming field and offset', () => {
  it.each([
    {
      name: 'PRIN header of 3 bytes',
      fn: () => decodeReadKeys(fromHex('000000')),
      field: 'prgeneration',
      offset: 0,
    },
    {
      name: 'PRIN header of 6 bytes',
      fn: () => decodeReadKeys(fromHex('000000010000')),
      field: 'additional length',
      offset: 4,
    },
    {
      name: 'READ KEYS length not a multiple of 8',
      fn: () => decodeReadKeys(fromHex('000000010000000c')),
      field: 'additional length',
      offset: 4,
    },
    {
      name: 'READ RESERVATION length 8',
      fn: () => decodeReadReservation(fromHex('0000000100000008' + '00'.repeat(8))),
      field: 'additional length',
      offset: 4,
    },
    {
      name: 'REPORT CAPABILITIES of 1 byte',
      fn: () => decodeCapabilities(fromHex('00')),
      field: 'length',
      offset: 0,
    },
    {
      name: 'PRIN service action 4',
      fn: () => decodePrinData(4, fromHex('0000000000000000')),
      field: 'service action',
      offset: 1,
    },
    {
      name: 'FULL STATUS descriptor past the additional length',
      fn: () =>
        decodeFullStatus(
          fromHex('0000000100000030' + '00'.repeat(20) + '00000019' + '06' + '00'.repeat(23)),
        ),
      field: 'additional descriptor length',
      offset: 28,
    },
    {
      name: 'FULL STATUS additional length shorter than a descriptor header',
      fn: () => decodeFullStatus(fromHex('0000000100000010' + '00'.repeat(16))),
      field: 'additional length',
      offset: 4,
    },
    {
      name: 'FULL STATUS iSCSI TransportID without NUL',
      fn: () =>
        decodeFullStatus(
          fromHex('0000000100000030' + '00'.repeat(20) + '00000018' + '05000014' + '41'.repeat(20)),
        ),
      field: 'iscsi name',
      offset: 36,
    },
    {
      name: 'PROUT list of 23 bytes',
      fn: () => decodeProutParameters(0, new Uint8Array(23)),
      field: 'parameter list length',
      offset: 23,
    },
    {
      name: 'SPEC_I_PT data length past the list',
      fn: () =>
        decodeProutParameters(
          0,
          fromHex('00'.repeat(20) + '08000000' + '00000030' + '06' + '00'.repeat(23)),
        ),
      field: 'transportid parameter data length',
      offset: 24,
    },
    {
      name: 'SPEC_I_PT TransportID longer than the data length',
      fn: () =>
        decodeProutParameters(
          0,
          fromHex('00'.repeat(20) + '08000000' + '00000010' + '06' + '00'.repeat(23)),
        ),
      field: 'transport id',
      offset: 28,
    },
    {
      name: 'MOVE TransportID length past the list',
      fn: () =>
        decodeProutParameters(7, fromHex('00'.repeat(20) + '00000020' + '06' + '00'.repeat(23))),
      field: 'transportid parameter data length',
      offset: 20,
    },
    {
      name: 'PROUT CDB with another opcode',
      fn: () => decodeProutCdb(fromHex('5e000000000000001800')),
      field: 'operation code',
      offset: 0,
    },
    {
      name: 'PROUT CDB of 6 bytes',
      fn: () => decodeProutCdb(fromHex('5f0000000000')),
      field: 'cdb',
      offset: 0,
    },
    {
      name: 'PROUT service action 9',
      fn: () => decodeProut(fromHex('5f090000000000001800'), new Uint8Array(24)),
      field: 'service action',
      offset: 1,
    },
    {
      name: 'PRIN CDB with another opcode',
      fn: () => decodePrinCdb(fromHex('5f000000000000200000')),
      field: 'operation code',
      offset: 0,
    },
    {
      name: 'empty sense',
      fn: () => decodeSense(new Uint8Array(0)),
      field: 'response code',
      offset: 0,
    },
    {
      name: 'sense response code 75h',
      fn: () => decodeSense(fromHex('7500050000')),
      field: 'response code',
      offset: 0,
    },
    {
      name: 'fixed sense of 2 bytes',
      fn: () => decodeSense(fromHex('7000')),
      field: 'sense key',
      offset: 2,
    },
    {
      name: 'descriptor sense of 3 bytes',
      fn: () => decodeSense(fromHex('720524')),
      field: 'additional sense code',
      offset: 2,
    },
    {
      name: 'sense descriptor past the additional sense length',
      fn: () => decodeSense(fromHex('7205240000000004' + '0206000000c00002')),
      field: 'additional length',
      offset: 9,
    },
    {
      name: 'iSCSI TransportID cut short',
      fn: () => decodeTransportId(fromHex('05000020' + '41'.repeat(10))),
      field: 'transport id additional length',
      offset: 2,
    },
    {
      name: 'SAS TransportID cut short',
      fn: () => decodeTransportId(fromHex('06000000'), 0),
      field: 'transport id',
      offset: 0,
    },
    {
      name: 'TransportID at the end of the buffer',
      fn: () => decodeTransportId(fromHex('0600'), 2),
      field: 'transport id',
      offset: 2,
    },
    {
      name: 'iSCSI port TransportID without ",i,0x"',
      fn: () => decodeTransportId(fromHex('45000014' + '41'.repeat(19) + '00')),
      field: 'iscsi name',
      offset: 4,
    },
    {
      name: 'iSCSI ISID that is not 12 hex digits',
      fn: () =>
        decodeTransportId(
          fromHex('45000014' + '41'.repeat(6) + '2c692c3078' + '7a'.repeat(8) + '00'),
        ),
      field: 'isid',
      offset: 15,
    },
    {
      name: 'iSCSI name with a space',
      fn: () => decodeTransportId(fromHex('05000014' + '4120' + '00'.repeat(18))),
      field: 'iscsi name',
      offset: 4,
    },
    {
      name: 'empty iSCSI name',
      fn: () => decodeTransportId(fromHex('05000014' + '00'.repeat(20))),
      field: 'iscsi name',
      offset: 4,
    },
    {
      name: 'VPD page 80h asked for 83h',
      fn: () => decodeDeviceIdentification(fromHex('08800000')),
      field: 'page code',
      offset: 1,
    },
    {
      name: 'VPD header of 3 bytes',
      fn: () => decodeVpdHeader(fromHex('088300')),
      field: 'page length',
      offset: 0,
    },
    {
      name: 'designator past the page length',
      fn: () => decodeDeviceIdentification(fromHex('08830008' + '01030008' + '5000e111')),
      field: 'designator length',
      offset: 7,
    },
    {
      name: 'page length cutting a designator header',
      fn: () => decodeDeviceIdentification(fromHex('08830002' + '0103')),
      field: 'page length',
      offset: 2,
    },
    {
      name: 'standard INQUIRY of 4 bytes',
      fn: () => decodeStandardInquiry(fromHex('08800302')),
      field: 'additional length',
      offset: 0,
    },
    {
      name: 'LUN list length not a multiple of 8',
      fn: () => decodeReportLunsData(fromHex('0000000400000000')),
      field: 'lun list length',
      offset: 0,
    },
    {
      name: 'LUN with a second level',
      fn: () => decodeReportLunsData(fromHex('0000000800000000' + '0001000100000000')),
      field: 'lun',
      offset: 11,
    },
    {
      name: 'LUN with extended addressing',
      fn: () => decodeReportLunsData(fromHex('0000000800000000' + 'c000000000000000')),
      field: 'lun',
      offset: 8,
    },
  ])('$name → $field at $offset', ({ fn, field, offset }) => {
    const e = decodeError(fn);
    expect(e.field).toBe(field);
    expect(e.offset).toBe(offset);
    expect(e.name).toBe('ScsiDecodeError');
    expect(e.message).toMatch(/^[a-z]/);
  });
});

describe('encoders refuse out-of-range values with ScsiEncodeError', () => {
  const bigTid: TransportId = { protocol: 'iscsi', name: 'x'.repeat(224) };
  it.each([
    {
      name: 'negative key',
      fn: () => encodeProut({ ...register, reservationKey: -1n }),
      field: 'reservationKey',
    },
    {
      name: 'key of 2^64',
      fn: () => encodeProut({ ...register, serviceActionKey: 1n << 64n }),
      field: 'serviceActionKey',
    },
    { name: 'scope 16', fn: () => encodeProut({ ...register, scope: 16 }), field: 'scope' },
    { name: 'type -1', fn: () => encodeProut({ ...register, type: -1 }), field: 'type' },
    { name: 'fractional type', fn: () => encodeProut({ ...register, type: 1.5 }), field: 'type' },
    {
      name: 'service action 9',
      fn: () => encodeProut({ ...register, serviceAction: 9 as 0 }),
      field: 'serviceAction',
    },
    {
      name: 'relative target port 65536',
      fn: () => encodeProut({ ...move, relativeTargetPort: 0x10000 }),
      field: 'relativeTargetPort',
    },
    {
      name: 'iSCSI name of 224 bytes',
      fn: () => encodeProut({ ...register, specIPt: [bigTid] }),
      field: 'name',
    },
    {
      name: 'empty iSCSI name',
      fn: () => encodeTransportId({ protocol: 'iscsi', name: '' }),
      field: 'name',
    },
    {
      name: 'iSCSI name with a comma',
      fn: () => encodeTransportId({ protocol: 'iscsi', name: 'iqn.a,b' }),
      field: 'name',
    },
    {
      name: 'iSCSI name with non-ASCII',
      fn: () => encodeTransportId({ protocol: 'iscsi', name: 'iqn.é' }),
      field: 'name',
    },
    {
      name: 'ISID of 11 digits',
      fn: () => encodeTransportId({ protocol: 'iscsi', name: 'iqn.a', isid: '23d00000000' }),
      field: 'isid',
    },
    {
      name: 'WWPN of 2^64',
      fn: () => encodeTransportId({ protocol: 'fc', wwpn: 1n << 64n }),
      field: 'wwpn',
    },
    {
      name: 'SAS address -1',
      fn: () => encodeTransportId({ protocol: 'sas', sasAddress: -1n }),
      field: 'sasAddress',
    },
    {
      name: 'empty raw TransportID',
      fn: () => encodeTransportId({ protocol: 'raw', bytes: new Uint8Array(0) }),
      field: 'bytes',
    },
    {
      name: 'raw TransportID of 20 bytes',
      fn: () => encodeTransportId({ protocol: 'raw', bytes: new Uint8Array(20).fill(4) }),
      field: 'bytes',
    },
    {
      name: 'raw TransportID longer than its header says',
      fn: () => encodeTransportId({ protocol: 'raw', bytes: new Uint8Array(28).fill(4) }),
      field: 'bytes',
    },
    { name: 'PRIN service action 32', fn: () => encodePrin(32, 8), field: 'serviceAction' },
    {
      name: 'PRIN allocation length 65536',
      fn: () => encodePrin(0, 0x10000),
      field: 'allocationLength',
    },
    {
      name: 'PROUT CDB length 2^32',
      fn: () =>
        encodeProutCdb({ serviceAction: 0, scope: 0, type: 0, parameterListLength: 2 ** 32 }),
      field: 'parameterListLength',
    },
    {
      name: 'generation 2^32',
      fn: () => encodeReadKeys({ generation: 2 ** 32, keys: [] }),
      field: 'generation',
    },
    {
      name: 'key of 2^64 in READ KEYS',
      fn: () => encodeReadKeys({ generation: 0, keys: [1n << 64n] }),
      field: 'keys[0]',
    },
    {
      name: 'reservation type 16',
      fn: () =>
        encodeReadReservation({ generation: 0, reservation: { key: 0n, scope: 0, type: 16 } }),
      field: 'type',
    },
    {
      name: 'ALLOW COMMANDS 8',
      fn: () =>
        encodeCapabilities({
          rlrC: false,
          crh: false,
          sipC: false,
          atpC: false,
          ptplC: false,
          tmv: false,
          allowCommands: 8,
          ptplA: false,
          supportedTypes: [],
        }),
      field: 'allowCommands',
    },
    {
      name: 'supported type 16',
      fn: () =>
        encodeCapabilities({
          rlrC: false,
          crh: false,
          sipC: false,
          atpC: false,
          ptplC: false,
          tmv: true,
          allowCommands: 0,
          ptplA: false,
          supportedTypes: [16],
        }),
      field: 'supportedTypes',
    },
    {
      name: 'sense key 16',
      fn: () => encodeSense({ senseKey: 16, asc: 0, ascq: 0 }),
      field: 'senseKey',
    },
    { name: 'ASC 256', fn: () => encodeSense({ senseKey: 5, asc: 256, ascq: 0 }), field: 'asc' },
    {
      name: 'field pointer bit 8',
      fn: () =>
        encodeSense({
          senseKey: 5,
          asc: 0x24,
          ascq: 0,
          fieldPointer: { inCdb: true, byte: 1, bit: 8 },
        }),
      field: 'fieldPointer.bit',
    },
    {
      name: 'field pointer byte 65536',
      fn: () =>
        encodeSense({
          senseKey: 5,
          asc: 0x24,
          ascq: 0,
          fieldPointer: { inCdb: true, byte: 0x10000 },
        }),
      field: 'fieldPointer.byte',
    },
    {
      name: 'fixed INFORMATION of 2^32',
      fn: () => encodeSense({ senseKey: 3, asc: 0x11, ascq: 0, information: 1n << 32n }),
      field: 'information',
    },
    {
      name: 'INQUIRY allocation length 65536',
      fn: () => encodeInquiry({ allocationLength: 0x10000 }),
      field: 'allocationLength',
    },
    {
      name: 'REPORT LUNS select report 256',
      fn: () => encodeReportLuns(256, 16),
      field: 'selectReport',
    },
    { name: 'LUN 16384', fn: () => encodeReportLunsData([0x4000]), field: 'lun' },
    {
      name: 'vendor of 9 characters',
      fn: () =>
        encodeStandardInquiry({
          peripheralQualifier: 0,
          peripheralDeviceType: 8,
          rmb: false,
          version: 6,
          responseDataFormat: 2,
          tpgs: 0,
          mchngr: false,
          multip: false,
          vendor: 'QUANTUMXX',
          product: '',
          revision: '',
        }),
      field: 'vendor',
    },
    {
      name: 'product with a tab',
      fn: () =>
        encodeStandardInquiry({
          peripheralQualifier: 0,
          peripheralDeviceType: 8,
          rmb: false,
          version: 6,
          responseDataFormat: 2,
          tpgs: 0,
          mchngr: false,
          multip: false,
          vendor: 'Q',
          product: 'a\tb',
          revision: '',
        }),
      field: 'product',
    },
    {
      name: 'peripheral device type 32',
      fn: () => encodeSupportedVpdPages(32, []),
      field: 'peripheralDeviceType',
    },
    {
      name: 'designator of 256 bytes',
      fn: () =>
        encodeDeviceIdentification(8, [
          { codeSet: 1, piv: false, association: 0, designatorType: 0, value: new Uint8Array(256) },
        ]),
      field: 'value.length',
    },
    { name: 'formatKey of -1', fn: () => formatKey(-1n), field: 'key' },
  ])('$name → $field', ({ fn, field }) => {
    const e = encodeError(fn);
    expect(e.field).toBe(field);
    expect(e.name).toBe('ScsiEncodeError');
    expect(e.message).toMatch(/^invalid /);
  });

  it.each([
    '',
    '-1',
    '0x',
    '0x11223344556677889',
    '18446744073709551616',
    '12abc',
    'key',
    '0x-1',
    ' 1 2 ',
  ])('parseKey rejects %j with "invalid key: … is not a uint64"', (text) => {
    const e = encodeError(() => parseKey(text));
    expect(e.message).toBe(`invalid key: ${text} is not a uint64`);
  });

  it.each([
    '',
    'sas',
    'sas:',
    'sas:0x',
    'sas:xyz',
    'fc:0x11223344556677889',
    'fc:21:00:00',
    'iscsi:',
    'iscsi:a b',
    'iscsi:iqn.a,i,0x1',
    'raw:0',
    'raw:zz',
    'raw:0600',
    'spi:1',
  ])('parseTransportId rejects %j', (text) => {
    const e = encodeError(() => parseTransportId(text));
    expect(e.field).toBe('transportId');
    expect(e.message).toMatch(/^invalid transport id: /);
  });
});
