import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { decodeFullStatus, decodeReadKeys, decodeReadReservation } from '../../src/scsi/index.js';
import { PROFILE_NAMES } from '../../src/emulator/index.js';
import { newLu, nexus, prin, prout } from './helpers.js';

const key = fc.constantFrom(0n, 1n, 2n, 3n, 0xffffffffffffffffn);
const command = fc.oneof(
  fc.record({
    op: fc.constant('prout' as const),
    who: fc.integer({ min: 0, max: 2 }),
    serviceAction: fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 8),
    type: fc.constantFrom(0, 1, 3, 5, 6, 7, 8, 9),
    scope: fc.constantFrom(0, 0, 0, 2),
    reservationKey: key,
    serviceActionKey: key,
    aptpl: fc.boolean(),
    allTgPt: fc.boolean(),
  }),
  fc.record({
    op: fc.constant('prin' as const),
    who: fc.integer({ min: 0, max: 2 }),
    serviceAction: fc.integer({ min: 0, max: 5 }),
  }),
  fc.record({ op: fc.constantFrom('power-cycle' as const, 'reset' as const), who: fc.constant(0) }),
);

test.prop([fc.constantFrom(...PROFILE_NAMES), fc.array(command, { maxLength: 40 })], {
  numRuns: 300,
})(
  'random PROUT/PRIN from 3 nexuses never throw, answer a valid status and keep the invariants',
  (profile, commands) => {
    const lu = newLu(profile);
    const nexuses = [nexus(0), nexus(1), nexus(2)];
    let lastGeneration = 0;
    for (const c of commands) {
      if (c.op === 'power-cycle') {
        lu.powerCycle();
        lastGeneration = 0;
        continue;
      }
      if (c.op === 'reset') {
        lu.reset();
        if (profile === 'superloader-changer') lastGeneration = 0;
        continue;
      }
      const who = nexuses[c.who]!;
      const r =
        c.op === 'prout'
          ? prout(lu, who, c)
          : prin(lu, who, (c as { serviceAction: number }).serviceAction);
      expect([0x00, 0x02, 0x18]).toContain(r.status);
      if (r.status === 0x02) expect(r.sense.length).toBeGreaterThan(0);
      // Invariants, read through a fresh look at the state.
      const snap = lu.snapshot();
      if (snap.reservation && (snap.reservation.type === 7 || snap.reservation.type === 8)) {
        expect(snap.reservation.holderKey).toBe('0x0000000000000000');
        expect(snap.registrations.length).toBeGreaterThan(0);
      }
      expect(snap.generation).toBeGreaterThanOrEqual(lastGeneration);
      lastGeneration = snap.generation;
    }
    // READ KEYS count = registrations; READ RESERVATION key 0 under AR (read past any pending UA).
    const reader = nexuses[0]!;
    let keys = prin(lu, reader, 0);
    for (let i = 0; i < 20 && keys.status === 0x02; i++) keys = prin(lu, reader, 0);
    expect(keys.status).toBe(0);
    expect(decodeReadKeys(keys.dataIn).keys).toHaveLength(lu.snapshot().registrations.length);
    const res = decodeReadReservation(prin(lu, reader, 1).dataIn).reservation;
    if (res && res.type >= 7) expect(res.key).toBe(0n);
    if (profile !== 'superloader-changer') {
      const full = decodeFullStatus(prin(lu, reader, 3).dataIn);
      expect(full.descriptors).toHaveLength(lu.snapshot().registrations.length);
    }
  },
);
