import { describe, expect, it } from 'vitest';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SGIO_ALLOWED_OPCODES,
  createSgioTransport,
  refuseRequest,
} from '../../agent/transport/sgio.js';
import { SG_IO_HDR_LAYOUT, checkSgIoHdrLayout } from '../../agent/transport/sgio-layout.js';
import { transportErrorFromErrno } from '../../agent/transport/sgio-errors.js';
import { TransportError } from '../../agent/transport/transport.js';
import { classifyResponse } from '../../src/scsi/classify.js';
import { outcomeOf } from '../../src/common/result.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import type { ScsiRequest } from '../../src/scsi/exchange.js';

const readKeys: ScsiRequest = {
  cdb: Uint8Array.of(0x5e, 0, 0, 0, 0, 0, 0, 0, 0xff, 0),
  dataInLength: 0xff,
  timeoutMs: 60_000,
};

describe('sg_io_hdr layout self-test', () => {
  it('accepts the x86_64 C layout', () => {
    expect(checkSgIoHdrLayout({ size: 88, offsets: { ...SG_IO_HDR_LAYOUT.offsets } })).toEqual([]);
  });

  it('names every field whose size or offset differs', () => {
    // The 32-bit layout: pointers are 4 bytes, so everything after dxferp moves.
    const offsets: Record<string, number> = { ...SG_IO_HDR_LAYOUT.offsets, cmdp: 20, sbp: 24 };
    delete offsets['info'];
    expect(checkSgIoHdrLayout({ size: 64, offsets })).toEqual([
      'sizeof = 64, expected 88',
      'offsetof(cmdp) = 20, expected 24',
      'offsetof(sbp) = 24, expected 32',
      'offsetof(info) = missing, expected 80',
    ]);
  });

  it('passes with the struct koffi builds on this machine', async () => {
    const result = await createSgioTransport().selfTest();
    expect(result.size).toBe(88);
    expect(result.koffiVersion).toMatch(/^3\./);
  });
});

describe('opcode allow-list', () => {
  it('allows exactly TEST UNIT READY, REQUEST SENSE, INQUIRY, PRIN, PROUT, REPORT LUNS and READ ELEMENT STATUS', () => {
    expect([...SGIO_ALLOWED_OPCODES].sort((a, b) => a - b)).toEqual([
      0x00, 0x03, 0x12, 0x5e, 0x5f, 0xa0, 0xb8,
    ]);
  });

  it.each([
    ['READ(10)', Uint8Array.of(0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0)],
    ['WRITE(10)', Uint8Array.of(0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0)],
    ['MOVE MEDIUM', new Uint8Array(12).fill(0xa5, 0, 1)],
    ['FORMAT UNIT', new Uint8Array(6).fill(0x04, 0, 1)],
  ])('refuses %s', (_name, cdb) => {
    expect(refuseRequest({ cdb, dataInLength: 0, timeoutMs: 1000 })).toMatch(
      /is not on the sgio allow-list/,
    );
  });

  it('refuses malformed requests', () => {
    expect(refuseRequest({ ...readKeys, cdb: readKeys.cdb.subarray(0, 6) })).toBe(
      'cdb for opcode 0x5e is 6 bytes, expected 10',
    );
    expect(refuseRequest({ ...readKeys, dataOut: new Uint8Array(24) })).toMatch(/TO_FROM_DEV/);
    expect(refuseRequest({ ...readKeys, timeoutMs: 0 })).toBe('invalid timeoutMs 0');
    expect(refuseRequest({ ...readKeys, dataInLength: -1 })).toBe('invalid dataInLength -1');
    expect(refuseRequest({ cdb: new Uint8Array(0), dataInLength: 0, timeoutMs: 1 })).toBe(
      'empty cdb',
    );
    expect(refuseRequest(readKeys)).toBeUndefined();
  });

  it('rejects a refused opcode with TransportError before any ioctl', async () => {
    const device = await createSgioTransport().open('/dev/null');
    try {
      const write10 = {
        cdb: Uint8Array.of(0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0),
        dataOut: new Uint8Array(512),
        dataInLength: 0,
        timeoutMs: 1000,
      };
      await expect(device.execute(write10)).rejects.toMatchObject({
        name: 'TransportError',
        code: 'EREFUSED',
        message: 'refused on /dev/null: opcode 0x2a is not on the sgio allow-list',
      });
    } finally {
      await device.close();
    }
  });
});

describe('errors from open and ioctl', () => {
  it('runs a real async ioctl and reports its errno (SG_IO on /dev/null → ENOTTY)', async () => {
    const device = await createSgioTransport().open('/dev/null');
    try {
      const error = await device.execute(readKeys).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransportError);
      expect(error).toMatchObject({ code: 'ENOTTY', path: '/dev/null', errno: 25 });
      expect((error as Error).message).toBe(
        'ioctl /dev/null: ENOTTY: not an SG_IO-capable node (use /dev/sgN)',
      );
    } finally {
      await device.close();
    }
  });

  it('reports a missing node as vanished', async () => {
    const error = await createSgioTransport()
      .open('/dev/sg-prfleet-missing')
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: 'TransportError',
      code: 'ENOENT',
      path: '/dev/sg-prfleet-missing',
    });
    expect((error as Error).message).toMatch(/device node vanished/);
  });

  it('keeps serving one node after another one failed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'prfleet-sgio-'));
    try {
      await writeFile(join(dir, 'plain'), 'x');
      const transport = createSgioTransport();
      const good = await transport.open('/dev/null');
      await expect(transport.open(join(dir, 'gone'))).rejects.toMatchObject({ code: 'ENOENT' });
      // The first node still answers (with ENOTTY: /dev/null is no sg node, but the ioctl really ran).
      await expect(good.execute(readKeys)).rejects.toMatchObject({ code: 'ENOTTY' });
      await good.close();
      await expect(good.execute(readKeys)).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['EPERM', 1, 'ioctl', /CAP_SYS_RAWIO/],
    ['EACCES', 13, 'open', /read-write access to the node.*CAP_SYS_RAWIO/],
    ['ENODEV', 19, 'ioctl', /vanished/],
    ['ENXIO', 6, 'open', /vanished/],
    ['ENOENT', 2, 'open', /vanished/],
    ['EINVAL', 22, 'ioctl', /invalid argument/],
  ] as const)('explains %s', (code, errno, operation, pattern) => {
    const error = transportErrorFromErrno(errno, '/dev/sg3', operation);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ code, errno, path: '/dev/sg3' });
    expect(error.message).toMatch(new RegExp(`^${operation} /dev/sg3: ${code}: `));
    expect(error.message).toMatch(pattern);
  });

  it('honours an abort before submission', async () => {
    const device = await createSgioTransport().open('/dev/null');
    try {
      await expect(device.execute(readKeys, { signal: AbortSignal.abort() })).rejects.toMatchObject(
        {
          name: 'AbortError',
        },
      );
    } finally {
      await device.close();
    }
  });
});

describe('classification of SG_IO answers', () => {
  const base = {
    sense: new Uint8Array(0),
    dataIn: new Uint8Array(0),
    resid: 0,
    driverStatus: 0,
    durationMs: 1,
  };

  it('treats status 18h as RESERVATION CONFLICT', () => {
    const response = { ...base, status: 0x18, hostStatus: 0 };
    expect(classifyResponse(response).kind).toBe('reservation-conflict');
    expect(outcomeOf(response)).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
  });

  it('treats host_status DID_NEXUS_FAILURE (11h) as RESERVATION CONFLICT, with or without status 18h', () => {
    for (const status of [0x00, 0x18]) {
      const response = { ...base, status, hostStatus: 0x11 };
      expect(classifyResponse(response).kind).toBe('reservation-conflict');
      expect(outcomeOf(response)).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    }
  });

  it('treats the watchdog answer (host DID_TIME_OUT) as a timeout', () => {
    expect(outcomeOf({ ...base, status: 0, hostStatus: 0x03 })).toBe(Outcome.OUTCOME_TIMEOUT);
  });
});
