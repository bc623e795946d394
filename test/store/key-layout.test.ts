import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import {
  KEY_PURPOSE_NAMES,
  KeyLayoutError,
  crc8,
  decodeKeyLayout,
  encodeKey,
  formatKey,
  keyFromBytes,
  keyToBytes,
  parseKey,
  readForeignKey,
} from '../../src/common/key-layout.js';

const uint64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const fields = fc.record({
  siteCode: fc.integer({ min: 1, max: 0xffff }),
  hostId: fc.integer({ min: 1, max: 0xffff }),
  purpose: fc.constantFrom(...KEY_PURPOSE_NAMES),
  serial: fc.integer({ min: 0, max: 15 }),
});
const ascii = (text: string): bigint => keyFromBytes(new TextEncoder().encode(text));

describe('key layout', () => {
  it('computes CRC-8/SMBUS with the catalogue check value 0xf4 for "123456789"', () => {
    expect(crc8(new TextEncoder().encode('123456789'))).toBe(0xf4);
  });

  it('encodes site 1, host 2, backup #0 as 50 01 0001 0002 10 f3', () => {
    // Check byte computed independently (Python, same polynomial) when this vector was written.
    expect(formatKey(encodeKey({ siteCode: 1, hostId: 2, purpose: 'backup', serial: 0 }))).toBe(
      '0x50010001000210f3',
    );
    expect(
      formatKey(encodeKey({ siteCode: 0xffff, hostId: 0xffff, purpose: 'test', serial: 15 })),
    ).toBe('0x5001ffffffff5f31');
  });

  test.prop([fields])('decodes every encoded key back to its fields', (f) => {
    const decoded = decodeKeyLayout(encodeKey(f));
    expect(decoded).toEqual({
      ok: true,
      layout: { ...f, version: 1, purposeCode: expect.any(Number) },
    });
  });

  test.prop([fields, fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 255 })])(
    'rejects every key with one byte changed (CRC-8 catches all single-byte errors)',
    (f, index, delta) => {
      const bytes = keyToBytes(encodeKey(f));
      bytes[index] = ((bytes[index] as number) + delta) & 0xff;
      expect(decodeKeyLayout(keyFromBytes(bytes)).ok).toBe(false);
    },
  );

  test.prop([uint64], { numRuns: 10_000 })(
    'reads every uint64 without throwing, and bytes round-trip',
    (key) => {
      expect(keyFromBytes(keyToBytes(key))).toBe(key);
      expect(parseKey(formatKey(key))).toBe(key);
      expect(formatKey(key)).toMatch(/^0x[0-9a-f]{16}$/);
      const reading = readForeignKey(key);
      expect(reading.summary.length).toBeGreaterThan(0);
      if (decodeKeyLayout(key).ok) expect(reading.kind).toBe('prfleet-unregistered');
    },
  );

  it('names the field of an out-of-range value', () => {
    const bad = (f: Partial<Parameters<typeof encodeKey>[0]>) => () =>
      encodeKey({ siteCode: 1, hostId: 1, purpose: 'backup', serial: 0, ...f });
    expect(bad({ siteCode: 0 })).toThrowError(
      new KeyLayoutError('siteCode', 'invalid siteCode: 0 is not in 1..65535'),
    );
    expect(bad({ hostId: 65536 })).toThrowError('invalid hostId: 65536 is not in 1..65535');
    expect(bad({ serial: 16 })).toThrowError('invalid serial: 16 is not in 0..15');
    expect(bad({ purpose: 'fencing' as never })).toThrowError(
      /invalid purpose: "fencing" is not one of backup, restore/,
    );
    expect(() => keyToBytes(-1n)).toThrowError('invalid key: -1 is not a uint64');
    expect(() => keyToBytes(1n << 64n)).toThrowError(/is not a uint64/);
    expect(() => parseKey('77')).not.toThrow();
    expect(() => parseKey('abc')).toThrowError('invalid key: abc is not a uint64');
    expect(() => parseKey('0x10000000000000000')).toThrowError(/is not a uint64/);
  });

  it('says why a key is not prfleet', () => {
    const valid = keyToBytes(encodeKey({ siteCode: 7, hostId: 9, purpose: 'admin', serial: 3 }));
    expect(decodeKeyLayout(0x77n)).toEqual({ ok: false, reason: 'magic' });
    const version2 = Uint8Array.from(valid);
    version2[1] = 2;
    expect(decodeKeyLayout(keyFromBytes(version2))).toEqual({ ok: false, reason: 'version' });
    const reservedPurpose = Uint8Array.from(valid);
    reservedPurpose[6] = 0xf0;
    reservedPurpose[7] = crc8(reservedPurpose.subarray(0, 7));
    expect(decodeKeyLayout(keyFromBytes(reservedPurpose))).toEqual({
      ok: false,
      reason: 'purpose',
    });
  });
});

describe('reading foreign keys', () => {
  it('recognises a prfleet key from another registry by its check byte', () => {
    const r = readForeignKey(
      encodeKey({ siteCode: 300, hostId: 4, purpose: 'restore', serial: 2 }),
    );
    expect(r).toMatchObject({
      kind: 'prfleet-unregistered',
      layout: { siteCode: 300, hostId: 4, purpose: 'restore', serial: 2 },
    });
  });

  it('reads Veritas fencing keys as their documentation lays them out', () => {
    expect(readForeignKey(ascii('VFDEED00'))).toMatchObject({
      kind: 'vxfen-coordinator',
      clusterId: 57069,
      nodeId: 0,
    });
    expect(readForeignKey(ascii('BVCS----'))).toMatchObject({ kind: 'vxfen-vcs-data', nodeId: 1 });
    expect(
      readForeignKey(keyFromBytes(Uint8Array.from([0x41, 0x50, 0x47, 0x52, 0, 0, 0, 1]))),
    ).toMatchObject({
      kind: 'vxfen-cvm-data',
      nodeId: 0,
      text: 'APGR....',
    });
  });

  it('reads other printable keys as ASCII', () => {
    expect(readForeignKey(ascii('BACKUP01'))).toMatchObject({ kind: 'ascii', text: 'BACKUP01' });
  });

  it('reads small values as hand-chosen integers and fence_scsi-shaped values as possible fence_scsi keys', () => {
    expect(readForeignKey(0x77n)).toMatchObject({ kind: 'small-integer', value: 0x77 });
    expect(readForeignKey(0x123abcn)).toMatchObject({ kind: 'small-integer' });
    expect(readForeignKey(0x3abe0012n)).toMatchObject({
      kind: 'fence-scsi',
      clusterHash: 0x3abe,
      nodeId: 12,
    });
  });

  it('knows the Linux nfsd pNFS server key, zero, and says unknown for the rest', () => {
    expect(readForeignKey(0x0100000000000000n).kind).toBe('linux-nfsd-mds');
    expect(readForeignKey(0n).kind).toBe('zero');
    expect(readForeignKey(0xdeadbeefcafef00dn)).toMatchObject({
      kind: 'unknown',
      summary: 'unknown layout 0xdeadbeefcafef00d',
    });
  });
});
