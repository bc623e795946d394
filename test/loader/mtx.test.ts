// The element model and its codec checked against an independent decoder: `mtx` (Debian's package) runs with an
// LD_PRELOAD bridge (sg-bridge.c) that sends its SG_IO commands to the emulated SuperLoader changer here. mtx
// decodes the emulator's bytes with its own code; prfleet's decoder reads the same bytes; both must agree on every
// element. MOVE MEDIUM through mtx then changes the model, and both agree again.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmulator, type EmulatedLogicalUnit } from '../../src/emulator/index.js';
import {
  decodeElementStatusData,
  decodeReadElementStatusCdb,
  ElementType,
  encodeReadElementStatus,
} from '../../src/scsi/index.js';
import { mtxView } from '../lio/mtx-view.js';

const run = promisify(execFile);
const inCi = process.env['CI'] === 'true';
const MTX = ['/usr/sbin/mtx', '/usr/bin/mtx'].find((p) => existsSync(p));
const CC = ['/usr/bin/cc', '/usr/bin/gcc'].find((p) => existsSync(p));
const missing =
  MTX === undefined ? 'mtx is not installed' : CC === undefined ? 'no C compiler' : '';
if (inCi && missing !== '') throw new Error(`CI needs this suite to run: ${missing}`);

const NEXUS = {
  transportId: { protocol: 'sas' as const, sasAddress: 0x50014050000000a1n },
  relativeTargetPort: 1,
};

describe.skipIf(missing !== '')('mtx agrees with prfleet on the emulated changer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'prfleet-mtx-'));
  const socket = join(dir, 'bridge.sock');
  const devicePath = join(dir, 'changer');
  const library = join(dir, 'sg-bridge.so');
  let changer: EmulatedLogicalUnit;
  let server: Server;
  /** Every READ ELEMENT STATUS answer the bridge passed to mtx, with its CDB. */
  const answers: { cdb: Uint8Array; dataIn: Uint8Array }[] = [];

  beforeAll(async () => {
    execFileSync(CC as string, [
      '-shared',
      '-fPIC',
      '-O2',
      '-o',
      library,
      join(import.meta.dirname, 'sg-bridge.c'),
      '-ldl',
    ]);
    changer = createEmulator().addLogicalUnit({
      id: 'loader1-changer',
      profile: 'superloader-changer',
      serial: 'CX0001',
      elements: {
        slots: 16,
        mailSlot: true,
        drives: [0x5000e11100000002n],
        cartridges: { 2: 'ABC002L8', 3: 'ABC003L8', 16: 'CLN001L1' },
        loaded: { 0: { slot: 1, barcode: 'ABC001L8' } },
      },
    });
    server = createServer((conn) => {
      let buffer = Buffer.alloc(0);
      conn.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        const cdbLength = buffer.length >= 4 ? buffer.readUInt32LE(0) : -1;
        if (cdbLength < 0 || buffer.length < 4 + cdbLength + 4) return;
        const outLength = buffer.readUInt32LE(4 + cdbLength);
        const inAt = 8 + cdbLength + outLength;
        if (buffer.length < inAt + 4) return;
        const cdb = new Uint8Array(buffer.subarray(4, 4 + cdbLength));
        const dataOut = new Uint8Array(buffer.subarray(8 + cdbLength, inAt));
        const dataInLength = buffer.readUInt32LE(inAt);
        const response = changer.execute(NEXUS, { cdb, dataOut, dataInLength, timeoutMs: 1000 });
        if (cdb[0] === 0xb8) answers.push({ cdb, dataIn: response.dataIn });
        const u32 = (n: number) => {
          const b = Buffer.alloc(4);
          b.writeUInt32LE(n);
          return b;
        };
        conn.end(
          Buffer.concat([
            u32(response.status),
            u32(response.sense.length),
            Buffer.from(response.sense),
            u32(response.dataIn.length),
            Buffer.from(response.dataIn),
          ]),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function mtx(...args: string[]): Promise<string> {
    const { stdout } = await run(MTX as string, ['-f', devicePath, ...args], {
      env: {
        ...process.env,
        LD_PRELOAD: library,
        PRFLEET_SG_BRIDGE_PATH: devicePath,
        PRFLEET_SG_BRIDGE_SOCKET: socket,
      },
      timeout: 20_000,
    });
    return stdout;
  }

  /** What prfleet's decoder makes of the last element status mtx was given, in mtx's words per element. */
  function prfleetView(): string[] {
    const lines: string[] = [];
    const slotNumber = new Map<number, number>();
    const decoded = answers
      .filter((a) => a.dataIn.length > 8)
      .map((a) => decodeElementStatusData(a.dataIn, decodeReadElementStatusCdb(a.cdb)));
    const pages = decoded.flatMap((d) => d.pages);
    const storage = pages
      .filter(
        (p) => p.elementType === ElementType.STORAGE || p.elementType === ElementType.IMPORT_EXPORT,
      )
      .flatMap((p) => p.descriptors.map((d) => ({ ...d, mail: p.elementType === 3 })))
      .sort((a, b) => Number(a.mail) - Number(b.mail) || a.address - b.address);
    storage.forEach((d, i) => slotNumber.set(d.address, i + 1));
    const drives = pages
      .filter((p) => p.elementType === ElementType.DATA_TRANSFER)
      .flatMap((p) => p.descriptors);
    drives.forEach((d, i) => {
      const tag = d.primaryVolumeTag?.identifier ?? '';
      lines.push(
        d.full
          ? `drive ${i} full from ${d.svalid ? slotNumber.get(d.sourceAddress) : '?'} ${tag}`
          : `drive ${i} empty`,
      );
    });
    storage.forEach((d, i) => {
      const tag = d.primaryVolumeTag?.identifier ?? '';
      lines.push(`slot ${i + 1}${d.mail ? ' mail' : ''} ${d.full ? `full ${tag}` : 'empty'}`);
    });
    return lines;
  }

  it('reads the same elements, barcodes and source slots', async () => {
    answers.length = 0;
    const status = await mtx('status');
    expect(status).toMatch(/Storage Changer .*:1 Drives, 17 Slots \( 1 Import\/Export \)/);
    const seen = mtxView(status);
    expect(seen).toContain('drive 0 full from 1 ABC001L8');
    expect(seen).toContain('slot 2 full ABC002L8');
    expect(seen).toContain('slot 17 mail empty');
    expect(prfleetView()).toEqual(seen);
  });

  it('agrees again after MOVE MEDIUM changed the model', async () => {
    await mtx('unload', '1', '0'); // drive 0 back to slot 1
    await mtx('load', '3', '0'); // slot 3 into drive 0
    answers.length = 0;
    const seen = mtxView(await mtx('status'));
    expect(seen).toContain('drive 0 full from 3 ABC003L8');
    expect(seen).toContain('slot 1 full ABC001L8');
    expect(seen).toContain('slot 3 empty');
    expect(prfleetView()).toEqual(seen);
  });

  it('names the drive LU through DVCID', () => {
    const response = changer.execute(NEXUS, {
      cdb: encodeReadElementStatus({
        elementType: ElementType.DATA_TRANSFER,
        numberOfElements: 8,
        voltag: true,
        dvcid: true,
        allocationLength: 4096,
      }),
      dataInLength: 4096,
      timeoutMs: 1000,
    });
    const drive = decodeElementStatusData(response.dataIn, { dvcid: true }).pages[0]
      ?.descriptors[0];
    expect(Buffer.from(drive?.identifier?.value ?? []).toString('hex')).toBe('5000e11100000002');
  });
});
