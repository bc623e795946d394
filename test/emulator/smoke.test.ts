import { describe, expect, it } from 'vitest';
import { encodeProut, encodePrin, decodeReadKeys, decodeReadReservation, decodeSense } from '../../src/scsi/index.js';
import { createEmulator } from '../../src/emulator/index.js';

const A = { transportId: { protocol: 'sas' as const, sasAddress: 0x50014050000000a1n }, relativeTargetPort: 1 };
const B = { transportId: { protocol: 'sas' as const, sasAddress: 0x50014050000000a2n }, relativeTargetPort: 2 };

describe('smoke', () => {
  it('registers, reserves and conflicts', () => {
    const lu = createEmulator().addLogicalUnit({ id: 'lu', profile: 'spc4', serial: 'S1' });
    const out = (i: typeof A, req: Parameters<typeof encodeProut>[0]) => {
      const { cdb, parameters } = encodeProut(req);
      return lu.execute(i, { cdb, dataOut: parameters, dataInLength: 0, timeoutMs: 1000 });
    };
    const base = { scope: 0, type: 0, reservationKey: 0n, serviceActionKey: 0n, specIPt: [], allTgPt: false, aptpl: false };
    expect(out(A, { ...base, serviceAction: 0, serviceActionKey: 1n }).status).toBe(0);
    expect(out(B, { ...base, serviceAction: 0, serviceActionKey: 2n }).status).toBe(0);
    expect(out(A, { ...base, serviceAction: 1, type: 1, reservationKey: 1n }).status).toBe(0);
    expect(out(B, { ...base, serviceAction: 1, type: 1, reservationKey: 2n }).status).toBe(0x18);
    const keys = lu.execute(B, { cdb: encodePrin(0, 100), dataInLength: 100, timeoutMs: 1000 });
    expect(decodeReadKeys(keys.dataIn)).toMatchObject({ generation: 2, keys: [1n, 2n] });
    const res = lu.execute(B, { cdb: encodePrin(1, 100), dataInLength: 100, timeoutMs: 1000 });
    expect(decodeReadReservation(res.dataIn).reservation).toMatchObject({ key: 1n, type: 1 });
    expect(out(B, { ...base, serviceAction: 4, type: 3, reservationKey: 2n, serviceActionKey: 1n }).status).toBe(0);
    const ua = lu.execute(A, { cdb: encodePrin(0, 100), dataInLength: 100, timeoutMs: 1000 });
    expect(ua.status).toBe(2);
    expect(decodeSense(ua.sense)).toMatchObject({ senseKey: 6, asc: 0x2a, ascq: 5 });
  });
});
