/**
 * Replays what real LIO answered (fixtures/lio-6.1-tcm_loop: kernel 6.1.0-57-amd64, fileio LU exported through
 * three tcm_loop TPGs, recorded by the VM suite) against the emulator's `lio` profile, command by command, with
 * the same LU lifetimes the VM run had: the LU and its twin are reused while scenarios pass without difference,
 * and replaced after a failure, a difference, a carry-over or for a spare LU. No VM needed: this pins the lio
 * profile to the measured bytes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SCENARIOS } from '../../src/conformance/index.js';
import {
  createEmulator,
  createTranscriptRecorder,
  parseTranscript,
  type EmulatedLogicalUnit,
  type Initiator,
  type Transcript,
  type TranscriptCommand,
} from '../../src/emulator/index.js';
import { fromHex, parseTransportId } from '../../src/scsi/index.js';
import { compareTranscripts, formatMismatch } from './differential.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'lio-6.1-tcm_loop');
/** The tcm_loop target of lio-setup.sh; TPG tag n exports relative target port n on the primary LU. */
const TARGET_WWN = 'naa.5001405000000001';

interface RunLine {
  t: string;
  id?: string;
  name?: string;
  lio?: string;
  diff?: string;
}

const runLines = readFileSync(join(FIXTURES, 'run.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as RunLine);
const recorded = new Set(
  readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.lio.jsonl'))
    .map((f) => f.slice(0, -'.lio.jsonl'.length)),
);

/**
 * The LU's capacity: what LIO answered READ CAPACITY(10) in the transcript, else that of the 1 MiB fileio LUs the
 * suite creates (test/lio/guest/lio-configfs.ts; in a full run every conformance LU is one of those).
 */
function capacityOf(t: Transcript): { blockCount: number } {
  for (const e of t.entries) {
    if (e.type !== 'command' || e.status !== 0 || !e.cdb.startsWith('25') || e.dataIn.length < 16)
      continue;
    return { blockCount: Number.parseInt(e.dataIn.slice(0, 8), 16) + 1 };
  }
  return { blockCount: 2048 };
}

/** An emulated twin with the identity of the recorded LIO LU (as test/lio/guest/conformance.ts builds it). */
function twinOf(t: Transcript): { lu: EmulatedLogicalUnit; initiators: Initiator[] } {
  const initiators = t.header.nexuses.map((n) => ({
    transportId: parseTransportId(n.transportId ?? ''),
    relativeTargetPort: n.relativeTargetPort ?? 0,
  }));
  const lu = createEmulator().addLogicalUnit({
    id: t.header.lu,
    profile: 'lio',
    serial: t.header.serial ?? t.header.lu,
    vendor: 'LIO-ORG',
    product: 'FILEIO',
    revision: '4.0',
    targetPorts: initiators.map((i) => i.relativeTargetPort),
    acl: Object.fromEntries(initiators.map((i) => [i.relativeTargetPort, [i.transportId]])),
    ...capacityOf(t),
    targetName: TARGET_WWN,
  });
  return { lu, initiators };
}

/** Sends the recorded requests to the twin (up to `limit` commands) and records its answers. */
function replay(
  t: Transcript,
  twin: { lu: EmulatedLogicalUnit; initiators: Initiator[] },
  limit: number,
): Transcript {
  const recorder = createTranscriptRecorder({
    profile: 'lio',
    lu: t.header.lu,
    nexuses: t.header.nexuses,
  });
  const commands = t.entries
    .filter((e): e is TranscriptCommand => e.type === 'command')
    .slice(0, limit);
  for (const c of commands) {
    const request = {
      cdb: fromHex(c.cdb),
      ...(c.dataOut ? { dataOut: fromHex(c.dataOut) } : {}),
      dataInLength: c.dataInLength,
      timeoutMs: c.timeoutMs,
    };
    recorder.command(
      c.nexus,
      request,
      twin.lu.execute(twin.initiators[c.nexus] as Initiator, request),
    );
  }
  return recorder.transcript();
}

describe('the emulator lio profile against answers measured on LIO 6.1 via tcm_loop', () => {
  let twin: { lu: EmulatedLogicalUnit; initiators: Initiator[] } | undefined;
  let freshNext = true;
  for (const line of runLines) {
    if (line.t === 'info' && line.name === 'carry-over') freshNext = true;
    if (line.t !== 'scenario' || line.id === undefined || !recorded.has(line.id)) continue;
    const id = line.id;
    const scenario = SCENARIOS.find((s) => s.id === id);
    const spare = (scenario?.tags ?? []).some((tag) => tag.startsWith('lio-bug-'));
    const fresh = freshNext || spare;
    // The VM replaced the LU after anything but a clean pass (test/lio/guest/conformance.ts).
    freshNext = line.lio !== 'pass' || line.diff !== undefined || spare;
    it(`${id} (${fresh ? 'fresh LU' : 'LU reused from the previous scenario'})`, () => {
      const lio = parseTranscript(readFileSync(join(FIXTURES, `${id}.lio.jsonl`), 'utf8'));
      if (fresh || !twin) twin = twinOf(lio);
      const commands = lio.entries.filter((e): e is TranscriptCommand => e.type === 'command');
      // The PREEMPT AND ABORT hang: LIO never answered that command (watchdog DID_TIME_OUT); compare before it.
      const hung = commands.findIndex((c) => c.hostStatus === 0x03);
      const limit = hung >= 0 ? hung : commands.length;
      const mismatch = compareTranscripts(lio, replay(lio, twin, limit), limit);
      expect(mismatch && formatMismatch(id, mismatch)).toBeUndefined();
    });
  }

  it('covers every recorded scenario', () => {
    const replayed = runLines.filter(
      (l) => l.t === 'scenario' && l.id !== undefined && recorded.has(l.id),
    );
    expect(replayed.length).toBe(recorded.size);
    expect(recorded.size).toBeGreaterThan(60);
  });
});

/**
 * Random sequences of the differential run (test/lio/random-sequences.ts) where LIO and the twin differed before
 * a fix, as LIO answered them: fixtures/…/random/seed-<seed>/ holds the transcripts of one LU's life, from a
 * fresh LU to the sequence that differed (the run reuses the LU while sequences agree, so that sequence began in
 * the state the earlier ones left). Replayed in order on one fresh twin, like the VM run did.
 */
describe('the emulator lio profile against random sequences LIO answered differently before a fix', () => {
  const root = join(FIXTURES, 'random');
  const runs = readdirSync(root);
  const indexOf = (file: string): number => Number(/-(\d+)\.lio\.jsonl$/.exec(file)?.[1]);
  for (const run of runs) {
    it(run, () => {
      const files = readdirSync(join(root, run))
        .filter((f) => f.endsWith('.lio.jsonl'))
        .sort((a, b) => indexOf(a) - indexOf(b));
      let twin: { lu: EmulatedLogicalUnit; initiators: Initiator[] } | undefined;
      for (const file of files) {
        const lio = parseTranscript(readFileSync(join(root, run, file), 'utf8'));
        twin ??= twinOf(lio);
        const mismatch = compareTranscripts(lio, replay(lio, twin, Infinity));
        expect(mismatch && formatMismatch(file, mismatch)).toBeUndefined();
      }
    });
  }
  it('has recordings', () => expect(runs.length).toBeGreaterThan(0));
});
