import { describe, expect, it } from 'vitest';
import {
  createTranscriptRecorder,
  parseTranscript,
  replayTranscript,
  transcriptNexusOf,
  TranscriptParseError,
} from '../../src/emulator/index.js';
import { createEmulatorHarness, runScenario, SCENARIOS } from '../../src/conformance/index.js';

async function recordScenario(id: string) {
  const scenario = SCENARIOS.find((s) => s.id === id)!;
  const harnessForIds = createEmulatorHarness('lio');
  const recorder = createTranscriptRecorder({
    profile: 'lio',
    lu: 'conformance-lio',
    serial: 'CONFORMANCE0001',
    nexuses: harnessForIds.initiators.map((i) => transcriptNexusOf(i)),
  });
  const harness = createEmulatorHarness('lio', 3, { recorder });
  const result = await runScenario(scenario, harness.options);
  expect(result.passed).toBe(true);
  return recorder.toJsonLines();
}

describe('transcripts', () => {
  it('round-trip through JSON lines and replay cleanly against the same profile', async () => {
    const text = await recordScenario('preempt.holder');
    const transcript = parseTranscript(text);
    expect(transcript.header).toMatchObject({
      format: 'prfleet-transcript',
      version: 1,
      profile: 'lio',
    });
    expect(transcript.entries.length).toBeGreaterThan(10);
    expect(replayTranscript(transcript)).toEqual({ ok: true, steps: transcript.entries.length });
  });

  it('replays control events (power cycle) too', async () => {
    const transcript = parseTranscript(await recordScenario('aptpl.power-cycle-keeps-state'));
    expect(transcript.entries.some((e) => e.type === 'event' && e.event === 'power-cycle')).toBe(
      true,
    );
    expect(replayTranscript(transcript).ok).toBe(true);
  });

  it('reports the first differing step with field, expected and actual hex', async () => {
    const transcript = parseTranscript(await recordScenario('release.wrong-type'));
    // The same bytes against SPC-4: RELEASE with the wrong type answers 26h/04h instead of LIO's conflict.
    const result = replayTranscript(transcript, { profile: 'spc4' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const releaseStep = transcript.entries.find(
      (e) => e.type === 'command' && e.cdb.startsWith('5f02') && e.status === 0x18,
    )!;
    expect(result).toMatchObject({
      step: releaseStep.step,
      field: 'status',
      expected: '0x18',
      actual: '0x02',
    });
    expect(result.message).toContain(`step ${releaseStep.step}`);
  });

  it('rejects malformed text naming the line', () => {
    expect(() => parseTranscript('')).toThrow(TranscriptParseError);
    expect(() => parseTranscript('{"type":"command"}')).toThrow(/line 1: first line must be/);
    const header =
      '{"type":"header","format":"prfleet-transcript","version":1,"profile":"spc4","lu":"x","nexuses":[{}]}';
    expect(() =>
      parseTranscript(
        `${header}\n{"type":"command","nexus":0,"cdb":"zz","sense":"","dataIn":"","status":0,"resid":0,"dataInLength":0}`,
      ),
    ).toThrow(/line 2: cdb is not hex/);
    expect(() => parseTranscript(`${header}\n{"type":"event","event":"explode"}`)).toThrow(
      /line 2: unknown event/,
    );
  });
});
