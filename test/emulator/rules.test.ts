import { describe, expect, it } from 'vitest';
import {
  decodeDeviceIdentification,
  decodeFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  decodeSense,
  decodeStandardInquiry,
  encodeInquiry,
  encodeRequestSense,
  encodeReserve6,
  encodeTestUnitReady,
  relativeTargetPortOf,
  targetPortGroupOf,
} from '../../src/scsi/index.js';
import {
  profileCapabilities,
  profileForInquiry,
  type Initiator,
} from '../../src/emulator/index.js';
import { newLu, nexus, prin, prout, raw } from './helpers.js';

const A = nexus(0);
const B = nexus(1);
const C = nexus(2);
const sense = (r: { sense: Uint8Array }) => decodeSense(r.sense);
const keysOf = (r: { dataIn: Uint8Array }) => decodeReadKeys(r.dataIn);

describe('unit attentions', () => {
  it('fails the next command with the UA and does not execute it; REQUEST SENSE returns and clears one', () => {
    const lu = newLu('spc4');
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
    prout(lu, B, { serviceAction: 0, serviceActionKey: 2n });
    prout(lu, A, { serviceAction: 3, reservationKey: 1n }); // CLEAR → 2Ah/03h on B
    const inquiry = lu.execute(B, {
      cdb: encodeInquiry({ allocationLength: 36 }),
      dataInLength: 36,
      timeoutMs: 1,
    });
    expect(inquiry.status).toBe(0); // INQUIRY is exempt and leaves the UA pending
    const rs = lu.execute(B, { cdb: encodeRequestSense(18), dataInLength: 18, timeoutMs: 1 });
    expect(rs.status).toBe(0);
    expect(decodeSense(rs.dataIn)).toMatchObject({ senseKey: 6, asc: 0x2a, ascq: 0x03 });
    expect(
      lu.execute(B, { cdb: encodeTestUnitReady(), dataInLength: 0, timeoutMs: 1 }).status,
    ).toBe(0);
  });

  it('a REGISTER that met a UA did not register', () => {
    const lu = newLu('spc4');
    lu.nexusLoss(B);
    const r = prout(lu, B, { serviceAction: 0, serviceActionKey: 2n });
    expect(sense(r)).toMatchObject({ senseKey: 6, asc: 0x29, ascq: 0x07 });
    expect(keysOf(prin(lu, A, 0)).keys).toEqual([]);
  });

  it('power cycle gives 29h/00h even to a nexus never seen before', () => {
    const lu = newLu('spc4');
    lu.powerCycle();
    expect(sense(raw(lu, C, [0, 0, 0, 0, 0, 0]))).toMatchObject({
      senseKey: 6,
      asc: 0x29,
      ascq: 0,
    });
  });
});

describe('PREEMPT AND ABORT', () => {
  it('reports the preempted nexuses (not the caller) to abort listeners', () => {
    const lu = newLu('spc4');
    const seen: Initiator[][] = [];
    const off = lu.onAbortTasks((v) => seen.push(v));
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
    prout(lu, B, { serviceAction: 0, serviceActionKey: 2n });
    prout(lu, C, { serviceAction: 0, serviceActionKey: 2n });
    prout(lu, B, { serviceAction: 1, reservationKey: 2n, type: 1 });
    expect(
      prout(lu, A, { serviceAction: 5, reservationKey: 1n, serviceActionKey: 2n, type: 3 }).status,
    ).toBe(0);
    expect(seen).toEqual([[B, C]]);
    off();
    prout(lu, B, { serviceAction: 6, serviceActionKey: 9n }); // UA first
    prout(lu, B, { serviceAction: 6, serviceActionKey: 9n });
    prout(lu, A, { serviceAction: 5, reservationKey: 1n, serviceActionKey: 9n, type: 3 });
    expect(seen).toHaveLength(1);
  });
});

describe('profile departures', () => {
  it('LIO: the AR internal holder key takes the reservation-replacing PREEMPT path; SPC-4 keeps the AR reservation', () => {
    for (const [profile, expected] of [
      ['lio', { key: 2n, type: 1 }],
      ['spc4', { key: 0n, type: 7 }],
    ] as const) {
      const lu = newLu(profile);
      prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
      prout(lu, B, { serviceAction: 0, serviceActionKey: 2n });
      prout(lu, A, { serviceAction: 1, reservationKey: 1n, type: 7 });
      expect(
        prout(lu, B, { serviceAction: 4, reservationKey: 2n, serviceActionKey: 1n, type: 1 })
          .status,
      ).toBe(0);
      expect(decodeReadReservation(prin(lu, B, 1).dataIn).reservation).toMatchObject(expected);
    }
  });

  it('LIO: SPEC_I_PT with REGISTER AND IGNORE → 26h/00h; SPC-4 registers both', () => {
    const lio = newLu('lio');
    const r = prout(lio, A, { serviceAction: 6, serviceActionKey: 1n, specIPt: [B.transportId] });
    expect(sense(r)).toMatchObject({ senseKey: 5, asc: 0x26, ascq: 0 });
    const spc = newLu('spc4');
    expect(
      prout(spc, A, { serviceAction: 6, serviceActionKey: 1n, specIPt: [B.transportId] }).status,
    ).toBe(0);
    expect(keysOf(prin(spc, A, 0))).toMatchObject({ keys: [1n, 1n], generation: 1 });
  });

  it('LIO raises PRgeneration once per SPEC_I_PT registration', () => {
    const lu = newLu('lio');
    prout(lu, A, {
      serviceAction: 0,
      serviceActionKey: 1n,
      specIPt: [B.transportId, C.transportId],
    });
    expect(keysOf(prin(lu, A, 0)).generation).toBe(3);
  });

  it('SPC-4 gives a field pointer for 24h/00h, LIO none', () => {
    const cdb = [0x5e, 0x09, 0, 0, 0, 0, 0, 0x10, 0, 0];
    expect(sense(raw(newLu('spc4'), A, cdb, 16)).fieldPointer).toEqual({
      inCdb: true,
      byte: 1,
      bit: 4,
    });
    expect(sense(raw(newLu('lio'), A, cdb, 16)).fieldPointer).toBeUndefined();
  });

  it('SuperLoader: list length exactly 24, SA 00h–06h, types 1/3/5/6, no REPORT CAPABILITIES', () => {
    const lu = newLu('superloader-changer');
    const list = new Uint8Array(28);
    list[15] = 1;
    const r = raw(lu, A, [0x5f, 0, 0, 0, 0, 0, 0, 0, 28, 0], 0, list);
    expect(sense(r)).toMatchObject({ asc: 0x1a });
    expect(
      sense(prout(lu, A, { serviceAction: 0, serviceActionKey: 1n, specIPt: [B.transportId] })),
    ).toMatchObject({ asc: 0x1a });
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
    expect(sense(prout(lu, A, { serviceAction: 1, reservationKey: 1n, type: 7 }))).toMatchObject({
      asc: 0x24,
    });
    expect(sense(prin(lu, A, 2))).toMatchObject({ senseKey: 5, asc: 0x24 });
    expect(sense(prin(lu, A, 3))).toMatchObject({ senseKey: 5, asc: 0x24 });
    const inq = decodeStandardInquiry(
      lu.execute(A, {
        cdb: encodeInquiry({ allocationLength: 36 }),
        dataInLength: 36,
        timeoutMs: 1,
      }).dataIn,
    );
    expect(inq).toMatchObject({
      peripheralDeviceType: 8,
      vendor: 'QUANTUM',
      product: 'UHDL',
      rmb: true,
    });
  });

  it('SuperLoader: a LU reset sets PRgeneration to 0 ("power on or reset")', () => {
    const lu = newLu('superloader-changer');
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
    lu.reset();
    prin(lu, A, 0); // consumes 29h/03h
    expect(keysOf(prin(lu, A, 0))).toMatchObject({ generation: 0, keys: [1n] });
  });

  it('profileForInquiry and profileCapabilities', () => {
    expect(profileForInquiry('QUANTUM ', 'UHDL            ', 8)).toBe('superloader-changer');
    expect(profileForInquiry('LIO-ORG', 'FILEIO', 0)).toBe('lio');
    expect(profileForInquiry('IBM', 'ULTRIUM-HH8', 1)).toBe('lto-drive');
    expect(profileForInquiry('ACME', 'THING', 0)).toBeUndefined();
    expect(profileCapabilities('superloader-changer')).toEqual({
      proutServiceActions: [0, 1, 2, 3, 4, 5, 6],
      prinServiceActions: [0, 1],
      types: [1, 3, 5, 6],
      specIPt: false,
      allTgPt: false,
      aptpl: true,
      peripheralDeviceType: 8,
    });
  });
});

describe('registrations and ports', () => {
  it('ALL_TG_PT registers the initiator port through every target port', () => {
    const lu = newLu('spc4');
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n, allTgPt: true });
    const sameInitiatorOtherPort = nexus(0, 3);
    expect(
      prout(lu, sameInitiatorOtherPort, { serviceAction: 1, reservationKey: 1n, type: 1 }).status,
    ).toBe(0);
    const full = decodeFullStatus(prin(lu, B, 3).dataIn);
    expect(full.descriptors).toHaveLength(1);
    expect(full.descriptors[0]).toMatchObject({ allTgPt: true, holder: true });
  });

  it('a full table gives 55h/04h and registers nobody, SPEC_I_PT included', () => {
    const lu = newLu('spc4', { maxRegistrations: 2 });
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
    const r = prout(lu, B, { serviceAction: 0, serviceActionKey: 2n, specIPt: [C.transportId] });
    expect(sense(r)).toMatchObject({ senseKey: 5, asc: 0x55, ascq: 4 });
    expect(keysOf(prin(lu, A, 0)).keys).toEqual([1n]);
  });

  it('VPD 83h carries the LU NAA and the caller’s relative target port and target port group', () => {
    const lu = newLu('spc4', { naa: 0x6001405000000001n });
    const r = lu.execute(B, {
      cdb: encodeInquiry({ evpd: true, pageCode: 0x83, allocationLength: 255 }),
      dataInLength: 255,
      timeoutMs: 1,
    });
    const designators = decodeDeviceIdentification(r.dataIn);
    expect(relativeTargetPortOf(designators)).toBe(2);
    expect(targetPortGroupOf(designators)).toBe(1);
    expect(designators.find((d) => d.association === 0 && d.designatorType === 3)?.value).toEqual(
      Uint8Array.of(0x60, 0x01, 0x40, 0x50, 0, 0, 0, 1),
    );
  });

  it('truncates data-in to the initiator’s buffer and sets resid', () => {
    const lu = newLu('spc4');
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
    const r = lu.execute(A, {
      cdb: Uint8Array.of(0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0),
      dataInLength: 12,
      timeoutMs: 1,
    });
    expect(r.dataIn).toHaveLength(12);
    expect(r.resid).toBe(0);
    const big = prin(lu, A, 0, 100);
    expect(big.dataIn).toHaveLength(16);
    expect(big.resid).toBe(84);
  });

  it('an unknown opcode is 5/20/00 and a command on an unknown target port never reaches the LU', () => {
    const lu = newLu('spc4');
    expect(sense(raw(lu, A, [0xc5, 0, 0, 0, 0, 0]))).toMatchObject({
      senseKey: 5,
      asc: 0x20,
      ascq: 0,
    });
    expect(raw(lu, nexus(0, 9), [0, 0, 0, 0, 0, 0]).hostStatus).toBe(0x01);
  });

  it('nexus loss drops that nexus’s SPC-2 reservation', () => {
    const lu = newLu('spc4');
    expect(lu.execute(A, { cdb: encodeReserve6(), dataInLength: 0, timeoutMs: 1 }).status).toBe(0);
    expect(prin(lu, B, 0).status).toBe(0x18);
    lu.nexusLoss(A);
    expect(prin(lu, B, 0).status).toBe(0);
  });

  it('APTPL: the last REGISTER governs; PRgeneration is 0 after power on', () => {
    const lu = newLu('spc4');
    prout(lu, A, { serviceAction: 0, serviceActionKey: 1n, aptpl: true });
    prout(lu, B, { serviceAction: 0, serviceActionKey: 2n, aptpl: false });
    lu.powerCycle();
    prin(lu, A, 0);
    expect(keysOf(prin(lu, A, 0))).toMatchObject({ generation: 0, keys: [] });
  });
});

describe('LIO layouts and rules measured on LIO 6.1 via tcm_loop (test/lio/fixtures)', () => {
  const lioLu = () =>
    newLu('lio', {
      serial: 'testbed-pr-lun-0001',
      vendor: 'LIO-ORG',
      product: 'FILEIO',
      revision: '4.0',
      targetName: 'naa.5001405000000001',
    });
  const inquiry = (lu: ReturnType<typeof newLu>, page?: number) =>
    lu.execute(A, {
      cdb:
        page === undefined
          ? encodeInquiry({ allocationLength: 96 })
          : encodeInquiry({ evpd: true, pageCode: page, allocationLength: 252 }),
      dataInLength: page === undefined ? 96 : 252,
      timeoutMs: 1,
    });
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

  it('standard INQUIRY and VPD 00h/80h/83h are LIO’s bytes; SPC-4 keeps the compact layout', () => {
    const lu = lioLu();
    expect(hex(inquiry(lu).dataIn)).toBe(
      '000006025bb810024c494f2d4f52472046494c45494f20202020202020202020342e3020' +
        '00'.repeat(22) +
        '00a00c60046004c0' +
        '00'.repeat(30),
    );
    expect(hex(inquiry(lu, 0x00).dataIn)).toBe('0000000800808386b0b1b2b3');
    expect(hex(inquiry(lu, 0x80).dataIn)).toBe('00800014746573746265642d70722d6c756e2d3030303100');
    expect(hex(inquiry(lu, 0x83).dataIn)).toBe(
      '00830093010300106001405ebed000100000000000000000020100234c494f2d4f52472046494c45494f3a746573746265642d70722d6c756e2d3030303100' +
        '619400040000000161950004000000000106000400000000639800206e61612e353030313430353030303030303030312c742c30783030303100000063a800186e61612e3530303134303530303030303030303100000000',
    );
    expect(decodeStandardInquiry(inquiry(newLu('spc4')).dataIn)).toMatchObject({
      version: 6,
      additionalLength: 31,
    });
    expect(inquiry(newLu('spc4'), 0x86).status).toBe(2);
    expect(inquiry(lu, 0x86).dataIn).toHaveLength(64);
  });

  it('SPEC_I_PT registers each named initiator through its own nexus’s port (LIO) or the receiving port (SPC-4)', () => {
    for (const [profile, ports] of [
      ['lio', [1, 2, 3]],
      ['spc4', [1, 1, 1]],
    ] as const) {
      const lu = newLu(profile);
      for (const n of [A, B, C]) raw(lu, n, [0, 0, 0, 0, 0, 0]); // the nexuses exist (LIO: sessions with ACLs)
      expect(
        prout(lu, A, {
          serviceAction: 0,
          serviceActionKey: 1n,
          specIPt: [B.transportId, C.transportId],
        }).status,
      ).toBe(0);
      const full = decodeFullStatus(prin(lu, A, 3).dataIn);
      expect(full.descriptors.map((d) => d.relativeTargetPort).sort()).toEqual(ports);
    }
  });

  it('an ALL_TG_PT registration changed without ALL_TG_PT: 24h/00h and key kept (LIO), GOOD (SPC-4)', () => {
    for (const [profile, status, key] of [
      ['lio', 2, 1n],
      ['spc4', 0, 2n],
    ] as const) {
      const lu = newLu(profile);
      prout(lu, A, { serviceAction: 0, serviceActionKey: 1n, allTgPt: true });
      const r = prout(lu, A, { serviceAction: 6, serviceActionKey: 2n });
      expect(r.status).toBe(status);
      if (status === 2) expect(sense(r)).toMatchObject({ senseKey: 5, asc: 0x24, ascq: 0 });
      expect(keysOf(prin(lu, A, 0)).keys).toEqual([key]);
    }
  });

  it('RELEASE(6) from a registered non-holder under RO/AR: RC (LIO), GOOD (SPC-4); the holder always GOOD', () => {
    for (const type of [5, 8]) {
      for (const [profile, status] of [
        ['lio', 0x18],
        ['spc4', 0],
      ] as const) {
        const lu = newLu(profile);
        prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
        prout(lu, B, { serviceAction: 0, serviceActionKey: 2n });
        prout(lu, A, { serviceAction: 1, reservationKey: 1n, type });
        expect(raw(lu, B, [0x17, 0, 0, 0, 0, 0]).status).toBe(status);
        expect(raw(lu, A, [0x17, 0, 0, 0, 0, 0]).status).toBe(0);
      }
    }
  });

  it('READ FULL STATUS: LIO writes descriptors while TransportID + earlier descriptors fit; SPC cuts bytes', () => {
    const run = (profile: 'lio' | 'spc4', allocation: number) => {
      const lu = newLu(profile);
      prout(lu, A, { serviceAction: 0, serviceActionKey: 1n });
      prout(lu, B, { serviceAction: 0, serviceActionKey: 2n });
      const r = prin(lu, A, 3, allocation);
      return [r.dataIn.length, new DataView(r.dataIn.buffer, r.dataIn.byteOffset).getUint32(4)];
    };
    expect(run('lio', 76)).toEqual([76, 96]); // measured
    expect(run('spc4', 76)).toEqual([76, 96]);
    expect(run('lio', 40)).toEqual([40, 48]);
    expect(run('spc4', 40)).toEqual([40, 96]);
    expect(run('lio', 20)).toEqual([8, 0]);
  });

  it('REQUEST SENSE fills the allocation length with zeros after the sense data (LIO), SPC-4 sends 18 bytes', () => {
    const rs = (profile: 'lio' | 'spc4') =>
      newLu(profile).execute(B, { cdb: encodeRequestSense(96), dataInLength: 96, timeoutMs: 1 });
    expect(rs('lio').dataIn).toHaveLength(96);
    expect(rs('spc4').dataIn).toHaveLength(18);
  });
});
