import { describe, expect, it } from 'vitest';
import {
  createEmulator,
  createTranscriptRecorder,
  type Initiator,
} from '../../src/emulator/index.js';
import { encodePrin, encodeProut, type ScsiRequest } from '../../src/scsi/index.js';
import { compareTranscripts, formatMismatch } from './differential.js';
import { formatLine, parseLines } from './protocol.js';

const nexuses: Initiator[] = [1, 2].map((i) => ({
  transportId: { protocol: 'sas', sasAddress: 0x50014050000000a0n + BigInt(i) },
  relativeTargetPort: i,
}));

/** Runs `requests` (nexus, request) on a fresh emulated LU of `profile` and returns its transcript. */
function record(profile: 'lio' | 'spc4', requests: Array<[number, ScsiRequest]>) {
  const lu = createEmulator().addLogicalUnit({
    id: 'lu',
    profile,
    serial: 'S1',
    targetPorts: [1, 2],
  });
  const recorder = createTranscriptRecorder({ profile, lu: 'lu', nexuses: [] });
  for (const [n, request] of requests)
    recorder.command(n, request, lu.execute(nexuses[n] as Initiator, request));
  return recorder.transcript();
}

const register = (sark: bigint): ScsiRequest => {
  const { cdb, parameters } = encodeProut({
    serviceAction: 0,
    scope: 0,
    type: 0,
    reservationKey: 0n,
    serviceActionKey: sark,
    specIPt: [],
    allTgPt: false,
    aptpl: false,
  });
  return { cdb, dataOut: parameters, dataInLength: 0, timeoutMs: 1000 };
};
const readKeys: ScsiRequest = { cdb: encodePrin(0, 64), dataInLength: 64, timeoutMs: 1000 };
// Unregistering: LIO leaves PRgeneration alone, SPC-4 increments it (scsi-pr.md §12).
const unregisterThenRead: Array<[number, ScsiRequest]> = [
  [0, register(0x11n)],
  [
    0,
    {
      ...register(0n),
      dataOut: (() => {
        const { parameters } = encodeProut({
          serviceAction: 0,
          scope: 0,
          type: 0,
          reservationKey: 0x11n,
          serviceActionKey: 0n,
          specIPt: [],
          allTgPt: false,
          aptpl: false,
        });
        return parameters;
      })(),
    },
  ],
  [1, readKeys],
];

describe('compareTranscripts', () => {
  it('finds no difference between two runs of the same profile', () => {
    expect(
      compareTranscripts(record('lio', unregisterThenRead), record('lio', unregisterThenRead)),
    ).toBeUndefined();
  });

  it('names the command and both data-in byte strings where two profiles differ', () => {
    const m = compareTranscripts(
      record('lio', unregisterThenRead),
      record('spc4', unregisterThenRead),
    );
    expect(m).toMatchObject({ step: 2, nexus: 1, cdb: '5e000000000000004000', field: 'dataIn' });
    expect(m?.lio).toBe('0000000100000000');
    expect(m?.emulator).toBe('0000000200000000');
    expect(formatMismatch('x', m!)).toBe(
      'x: command 2 (nexus 1, cdb 5e000000000000004000) dataIn differs: LIO 0000000100000000 vs emulator 0000000200000000',
    );
  });

  it('reports different requests and different lengths, and honours a limit', () => {
    const a = record('lio', [
      [0, readKeys],
      [0, register(1n)],
    ]);
    const b = record('lio', [[1, readKeys]]);
    expect(compareTranscripts(a, b)?.field).toBe('request');
    expect(compareTranscripts(a, record('lio', [[0, readKeys]]))).toMatchObject({
      step: 1,
      field: 'length',
    });
    expect(compareTranscripts(a, record('lio', [[0, readKeys]]), 1)).toBeUndefined();
  });

  it('compares only status and sense when a command was not GOOD', () => {
    const lio = record('lio', [[0, readKeys]]);
    const other = structuredClone(lio);
    const entry = other.entries[0];
    if (entry?.type !== 'command') throw new Error('no command');
    lio.entries[0] = { ...entry, status: 0x18, dataIn: '00000000' };
    other.entries[0] = { ...entry, status: 0x18, dataIn: '' };
    expect(compareTranscripts(lio, other)).toBeUndefined();
    other.entries[0] = { ...entry, status: 0x02, dataIn: '' };
    expect(compareTranscripts(lio, other)).toMatchObject({
      field: 'status',
      lio: '0x18',
      emulator: '0x2',
    });
  });
});

describe('result lines', () => {
  it('round-trip through the console, with timestamps and noise around them', () => {
    const line = formatLine({ t: 'scenario', id: 'a.b', lio: 'pass', ms: 3 });
    const console = `[  1.0] boot\n[  2.5] ${line}\r\ngarbage PRFLEET-LIO {broken\n${formatLine({ t: 'info', name: 'end', key: 0x77n })}\n`;
    expect(parseLines(console)).toEqual([
      { t: 'scenario', id: 'a.b', lio: 'pass', ms: 3 },
      { t: 'info', name: 'end', key: '0x77' },
    ]);
  });
});
