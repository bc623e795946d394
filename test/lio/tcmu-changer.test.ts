// The LIO VM's changer handler (tcmu-changer.c) is a C port of the emulator's element model: both must answer
// every element command with the same status, sense and bytes. The handler runs here without a kernel (--stdio:
// CDBs in, answers out) next to an emulated superloader-changer LU with the same layout; a sequence of READ
// ELEMENT STATUS variants, MODE SENSE page 1Dh and MOVE MEDIUM (moves that succeed and each refusal) goes to both.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmulator, type EmulatedLogicalUnit } from '../../src/emulator/index.js';
import { ElementType, encodeReadElementStatus, toHex } from '../../src/scsi/index.js';

const CC = ['/usr/bin/cc', '/usr/bin/gcc'].find((p) => existsSync(p));
if (process.env['CI'] === 'true' && CC === undefined) throw new Error('CI needs a C compiler');

/** The layout both sides get (the handler as options, the emulator as its `elements:`). */
const LAYOUT = {
  slots: 8,
  mailSlot: true,
  drives: [0x5000e11100000002n, 0x5000e11100000003n],
  cartridges: { 2: 'ABC002L8', 3: 'ABC003L8', 8: 'CLN001L1' },
  loaded: { 1: { slot: 1, barcode: 'ABC001L8' } },
};
const HANDLER_ARGS = [
  '--slots',
  '8',
  '--drive',
  '5000e11100000002',
  '--drive',
  '5000e11100000003',
  '--cartridge',
  '2=ABC002L8',
  '--cartridge',
  '3=ABC003L8',
  '--cartridge',
  '8=CLN001L1',
  '--loaded',
  '1=1:ABC001L8',
];

const NEXUS = {
  transportId: { protocol: 'sas' as const, sasAddress: 0x50014050000000a1n },
  relativeTargetPort: 1,
};

interface Answer {
  status: number;
  sense: string;
  data: string;
}

function senseOf(sense: Uint8Array): string {
  if (sense.length === 0) return '';
  const descriptor = ((sense[0] ?? 0) & 0x7f) >= 0x72;
  const [key, asc, ascq] = descriptor
    ? [sense[1], sense[2], sense[3]]
    : [sense[2], sense[12], sense[13]];
  return [(key ?? 0) & 0x0f, asc ?? 0, ascq ?? 0].map((n) => n.toString(16)).join('/');
}

const hex = (...bytes: number[]): string => toHex(new Uint8Array(bytes));
const move = (transport: number, from: number, to: number): string =>
  hex(
    0xa5,
    0,
    transport >> 8,
    transport & 0xff,
    from >> 8,
    from & 0xff,
    to >> 8,
    to & 0xff,
    0,
    0,
    0,
    0,
  );
const res = (fields: Parameters<typeof encodeReadElementStatus>[0]): string =>
  toHex(encodeReadElementStatus(fields));

/** What both are asked, in order (moves change the model, so later reads see the new state). */
const SEQUENCE: string[] = [
  hex(0x1a, 0x08, 0x1d, 0, 0xff, 0),
  hex(0x1a, 0x08, 0x3f, 0, 0xff, 0),
  hex(0x1a, 0x08, 0x1d, 0, 10, 0),
  res({ numberOfElements: 0xffff, voltag: true, allocationLength: 0xffff }),
  res({ numberOfElements: 0xffff, voltag: true, dvcid: true, allocationLength: 0xffff }),
  res({ numberOfElements: 0xffff, allocationLength: 0xffff }),
  res({
    elementType: ElementType.DATA_TRANSFER,
    numberOfElements: 8,
    voltag: true,
    dvcid: true,
    allocationLength: 4096,
  }),
  res({
    elementType: ElementType.STORAGE,
    startingElement: 0x22,
    numberOfElements: 3,
    voltag: true,
    allocationLength: 4096,
  }),
  res({
    elementType: ElementType.IMPORT_EXPORT,
    numberOfElements: 1,
    voltag: true,
    allocationLength: 4096,
  }),
  res({ elementType: ElementType.MEDIUM_TRANSPORT, numberOfElements: 1, allocationLength: 4096 }),
  res({ numberOfElements: 1, allocationLength: 8 }),
  res({ numberOfElements: 0xffff, voltag: true, allocationLength: 100 }),
  res({ startingElement: 0x0f, numberOfElements: 4, allocationLength: 4096 }),
  res({ startingElement: 0x7fff, numberOfElements: 4, allocationLength: 4096 }),
  res({ numberOfElements: 0, allocationLength: 4096 }),
  move(0, 0x21, 0x01), // slot 2 into drive 0
  move(0, 0x21, 0x01), // source now empty
  move(0, 0x22, 0x02), // drive 1 is full
  move(5, 0x22, 0x10), // no such transport
  move(0, 0x99, 0x10), // no such source
  move(0, 0x22, 0x00), // the transport is no destination
  move(0, 0x02, 0x10), // drive 1 to the mail slot (its source stays slot 1)
  move(0, 0x10, 0x23), // and on to slot 4
  res({ numberOfElements: 0xffff, voltag: true, dvcid: true, allocationLength: 0xffff }),
  hex(0xb8, 0x1f, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0), // element type 0Fh is reserved
];

describe.skipIf(CC === undefined)(
  'tcmu-changer.c answers like the emulator’s element model',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'prfleet-tcmu-changer-'));
    const binary = join(dir, 'tcmu-changer');
    let changer: EmulatedLogicalUnit;

    beforeAll(() => {
      execFileSync(CC as string, [
        '-O2',
        '-Wall',
        '-Werror',
        '-o',
        binary,
        join(import.meta.dirname, 'tcmu-changer.c'),
      ]);
      changer = createEmulator().addLogicalUnit({
        id: 'tcmu-twin',
        profile: 'superloader-changer',
        serial: 'TCMU0001',
        elements: LAYOUT,
      });
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    async function handlerAnswers(cdbs: readonly string[]): Promise<Answer[]> {
      const child = spawn(binary, ['--stdio', ...HANDLER_ARGS], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      child.stdin.end(cdbs.map((c) => `${c}\n`).join(''));
      const answers: Answer[] = [];
      for await (const line of createInterface({ input: child.stdout })) {
        const [status, key, asc, ascq, data] = line.split(' ');
        answers.push({
          status: Number(status),
          sense:
            Number(status) === 2
              ? [key, asc, ascq].map((n) => Number(n).toString(16)).join('/')
              : '',
          data: data ?? '',
        });
      }
      return answers;
    }

    function emulatorAnswer(cdbHex: string): Answer {
      const cdb = Uint8Array.from(Buffer.from(cdbHex, 'hex'));
      const dataInLength =
        cdb[0] === 0x1a
          ? (cdb[4] ?? 0)
          : cdb[0] === 0xb8
            ? ((cdb[7] ?? 0) << 16) | ((cdb[8] ?? 0) << 8) | (cdb[9] ?? 0)
            : 0;
      const r = changer.execute(NEXUS, { cdb, dataInLength, timeoutMs: 1000 });
      return {
        status: r.status,
        sense: r.status === 2 ? senseOf(r.sense) : '',
        data: toHex(r.dataIn),
      };
    }

    it('gives the same status, sense and data for every command of the sequence', async () => {
      const handler = await handlerAnswers(SEQUENCE);
      const emulator = SEQUENCE.map(emulatorAnswer);
      expect(handler).toHaveLength(SEQUENCE.length);
      SEQUENCE.forEach((cdb, i) => expect(handler[i], `CDB ${cdb}`).toEqual(emulator[i]));
      // The sequence exercised moves that succeeded and each refusal, not only reads.
      expect(emulator.filter((a) => a.status === 0).length).toBeGreaterThan(15);
      expect(new Set(emulator.map((a) => a.sense))).toEqual(
        new Set(['', '5/3b/e', '5/3b/d', '5/24/0']),
      );
    });

    it('answers INQUIRY as a medium changer (PDT 08h, removable) with its NAA in VPD 83h', async () => {
      const [standard, vpd83] = await handlerAnswers([
        hex(0x12, 0, 0, 0, 96, 0),
        hex(0x12, 1, 0x83, 0, 252, 0),
      ]);
      expect(standard?.data.slice(0, 8)).toBe('08800602');
      expect(
        Buffer.from(standard?.data ?? '', 'hex')
          .subarray(8, 36)
          .toString(),
      ).toBe('PRFLEET TCMU CHANGER    0001');
      expect(vpd83?.data).toBe('0883000c010300085001405c0000c001');
    });
  },
);
