import { describe, expect, it } from 'vitest';
import { runScenarioOnEmulator, type Scenario } from '../../src/conformance/index.js';
import {
  randomSequences,
  sampleSequences,
  sequenceId,
  withoutHangingPreemptAndAbort,
} from './random-sequences.js';

const K1 = 0xa1a1_0000_0000_00a1n;
const K2 = 0xb2b2_0000_0000_00b2n;

describe('random PR sequences for the LIO differential run', () => {
  it('are the same for the same seed (a failure in the VM is rebuilt on the host) and differ between seeds', () => {
    expect(sampleSequences(7, 20)).toEqual(sampleSequences(7, 20));
    expect(sampleSequences(7, 20)).not.toEqual(sampleSequences(8, 20));
    expect(sampleSequences(7, 3).map((s) => s.id)).toEqual([0, 1, 2].map((i) => sequenceId(7, i)));
  });

  it('cover every PROUT service action LIO runs, every PRIN read, wrong types and scopes, APTPL and ALL_TG_PT', () => {
    const steps = sampleSequences(11, 200).flatMap((s) => s.steps);
    const commands = steps.map((s) => s.command);
    const kinds = new Set(
      commands.map(
        (c) =>
          c.kind +
          ('ignore' in c && c.ignore ? '+ignore' : '') +
          ('abort' in c && c.abort ? '+abort' : ''),
      ),
    );
    expect([...kinds].sort()).toEqual(
      [
        'clear',
        'move',
        'preempt',
        'preempt+abort',
        'read-full-status',
        'read-keys',
        'read-reservation',
        'register',
        'register+ignore',
        'release',
        'report-capabilities',
        'reserve',
        'test-unit-ready',
      ].sort(),
    );
    const types = new Set(commands.flatMap((c) => ('type' in c ? [c.type] : [])));
    for (const t of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15]) expect(types).toContain(t);
    expect(commands.some((c) => 'scope' in c && c.scope !== 0)).toBe(true);
    expect(commands.some((c) => c.kind === 'register' && c.aptpl === true)).toBe(true);
    expect(commands.some((c) => c.kind === 'register' && c.allTgPt === true)).toBe(true);
    expect(commands.some((c) => c.kind === 'move' && c.unreg === true)).toBe(true);
    expect(commands.some((c) => c.kind === 'move' && 'foreign' in c.destination)).toBe(true);
    const lengths = new Set(
      commands.flatMap((c) => ('allocationLength' in c ? [c.allocationLength] : [])),
    );
    for (const n of [0, 8, 22, 76]) expect(lengths).toContain(n);
    // A rejected SPEC_I_PT leaks a reference to the LIO LU: never sent.
    expect(commands.some((c) => c.kind === 'register' && (c.specIPt ?? []).length > 0)).toBe(false);
    expect(new Set(steps.map((s) => s.nexus))).toEqual(new Set([0, 1, 2]));
  });

  it('send a PREEMPT AND ABORT the lio profile would run as PREEMPT (tcm_loop hangs on it) and keep refused ones', async () => {
    const scenario: Scenario = {
      id: 'x',
      title: 'x',
      steps: [
        { nexus: 0, command: { kind: 'register', sark: K1 }, expect: { status: 'any' } },
        { nexus: 1, command: { kind: 'register', sark: K2 }, expect: { status: 'any' } },
        { nexus: 1, command: { kind: 'reserve', key: K2, type: 1 }, expect: { status: 'any' } },
        // Refused: a wrong reservation key.
        {
          nexus: 2,
          command: { kind: 'preempt', key: K1, sark: K2, type: 1, abort: true },
          expect: { status: 'any' },
        },
        // Runs: nexus 0 preempts nexus 1.
        {
          nexus: 0,
          command: { kind: 'preempt', key: K1, sark: K2, type: 1, abort: true },
          expect: { status: 'any' },
        },
      ],
    };
    const safe = await withoutHangingPreemptAndAbort(scenario);
    expect(safe.steps.slice(0, 4)).toEqual(scenario.steps.slice(0, 4));
    expect(safe.steps[4]?.command).toEqual({
      kind: 'preempt',
      key: K1,
      sark: K2,
      type: 1,
      abort: false,
    });
  });

  it('run on an emulated lio LU to the end, with no PREEMPT AND ABORT left that succeeds, and reach moves and preemptions', async () => {
    const succeeded = new Set<string>();
    for (const sequence of await randomSequences(5, 60)) {
      const result = await runScenarioOnEmulator(sequence, 'lio');
      expect(result.failure).toBeUndefined();
      sequence.steps.forEach((s, i) => {
        if (s.command.kind === 'preempt' && s.command.abort === true)
          expect(result.steps[i]?.response.status).not.toBe(0);
        if (result.steps[i]?.response.status === 0) succeeded.add(s.command.kind);
      });
    }
    for (const kind of ['register', 'reserve', 'release', 'clear', 'preempt', 'move'])
      expect(succeeded).toContain(kind);
  });
});
