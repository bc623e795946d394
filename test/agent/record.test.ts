import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createEmulatedFabric, loadFabric } from '../../agent/fabric.js';
import { recordingSource } from '../../agent/record.js';
import { createEmulatedSource } from '../../agent/sources.js';
import { parseTranscript, replayTranscript } from '../../src/emulator/index.js';
import {
  encodePrin,
  encodeProut,
  encodeRead10,
  type ProutRequest,
  type ScsiRequest,
} from '../../src/scsi/index.js';

/** One LIO LU reached by host-a (sas 0x500605b000000a01, port 1) and host-b (port 2). */
const LIO_FABRIC = fileURLToPath(new URL('../fleet/fabric-lio.yaml', import.meta.url));
const KEY = 0x5ca1ab1e0000beefn;
const KEY_HEX = '5ca1ab1e0000beef';

function prout(req: Partial<ProutRequest> & { serviceAction: 0 | 1 }): ScsiRequest {
  const { cdb, parameters } = encodeProut({
    scope: 0,
    type: 0,
    reservationKey: 0n,
    serviceActionKey: 0n,
    specIPt: [],
    allTgPt: false,
    aptpl: false,
    ...req,
  });
  return { cdb, dataOut: parameters, dataInLength: 0, timeoutMs: 1000 };
}
const prin = (sa: number, length = 4096): ScsiRequest => ({
  cdb: encodePrin(sa, length),
  dataInLength: length,
  timeoutMs: 1000,
});

/** Records host-a's session on its one path; returns the transcript text. */
async function record(maskKeys: boolean): Promise<string> {
  const fabric = createEmulatedFabric(await loadFabric(LIO_FABRIC));
  const dir = await mkdtemp(join(tmpdir(), 'prfleet-record-'));
  const source = recordingSource(createEmulatedSource(fabric.host('host-a')), { dir, maskKeys });
  const [target] = await source.listTargets();
  const device = await source.transport.open(target?.path ?? '');
  const own = { protocol: 'sas', sasAddress: 0x500605b000000a01n } as const;
  // LIO 6.1: SPEC_I_PT naming the sender registers it twice; then reserve, read everything back, read data.
  await device.execute(prout({ serviceAction: 0, serviceActionKey: KEY, specIPt: [own] }));
  await device.execute(prout({ serviceAction: 1, reservationKey: KEY, type: 3 }));
  for (const sa of [0, 1, 3]) await device.execute(prin(sa));
  await device.execute(prin(0, 12)); // cut inside the first key
  await device.execute({
    cdb: encodeRead10({ lba: 0, transferLength: 1 }),
    dataInLength: 512,
    timeoutMs: 1000,
  });
  await device.close();
  const files = await readdir(dir);
  expect(files).toEqual([expect.stringMatching(/^dev_sg0-\d{8}T\d{9}Z\.jsonl$/)]);
  return readFile(join(dir, files[0] as string), 'utf8');
}

describe('prfleet-agent --record', () => {
  it('writes the PR and identity commands of a path to a transcript that replays against lio, not spc4', async () => {
    const text = await record(false);
    const t = parseTranscript(text);
    expect(t.header).toMatchObject({
      profile: 'unknown',
      lu: '/dev/sg0',
      nexuses: [{ path: '/dev/sg0', transportId: 'sas:0x500605b000000a01' }],
    });
    // READ(10) is not a PR or identity command: not recorded.
    expect(t.entries.map((e) => (e.type === 'command' ? e.cdb.slice(0, 2) : e.type))).toEqual([
      '5f',
      '5f',
      '5e',
      '5e',
      '5e',
      '5e',
    ]);
    expect(text).toContain(KEY_HEX);
    expect(replayTranscript(t, { profile: 'lio' })).toEqual({ ok: true, steps: 6 });
    expect(replayTranscript(t, { profile: 'spc4' })).toMatchObject({
      ok: false,
      step: 2,
      field: 'dataIn',
    });
  });

  it('masks reservation keys consistently, so the masked transcript still replays', async () => {
    const text = await record(true);
    expect(text).not.toContain(KEY_HEX);
    const t = parseTranscript(text);
    const commands = t.entries.flatMap((e) => (e.type === 'command' ? [e] : []));
    const masked = commands[0]?.dataOut.slice(16, 32) ?? '';
    expect(masked).toMatch(/^[0-9a-f]{16}$/);
    expect(masked).not.toBe('0000000000000000');
    // The stand-in appears wherever the key did: RESERVE's RK, READ KEYS (twice), READ RESERVATION, FULL STATUS.
    expect(commands[1]?.dataOut.slice(0, 16)).toBe(masked);
    expect(commands[2]?.dataIn).toBe(`0000000200000010${masked}${masked}`);
    expect(commands[3]?.dataIn.slice(16, 32)).toBe(masked);
    expect(commands[5]?.dataIn).toBe(`0000000200000010${'0'.repeat(8)}`); // LIO: only whole keys
    expect(replayTranscript(t, { profile: 'lio' })).toEqual({ ok: true, steps: 6 });
  });
});
