/**
 * Random PERSISTENT RESERVE sequences for the differential run against real LIO (test/lio/guest/random.ts): each
 * sequence is a conformance Scenario without expectations, so the runner sends it after its cleanup prologue and
 * the two transcripts (LIO, emulator twin) are compared command by command. Seeded: `sampleSequences(seed, n)`
 * gives the same n sequences on the host and in the VM, so a failure names (seed, index) and is rebuilt anywhere.
 * Pure apart from the emulator dry run; used in the VM and unit-tested on the host.
 */
import fc from 'fast-check';
import {
  runScenarioOnEmulator,
  type Scenario,
  type ScenarioCommand,
  type ScenarioStep,
} from '../../src/conformance/index.js';

/** Id prefix of the random sequences' result lines and transcripts. */
export const RANDOM_SEQUENCE_PREFIX = 'random-';

/** Nexuses of the LIO LU (three tcm_loop TPGs). */
const NEXUSES = 3;
/** Each nexus's "own" key: most commands use it, so sequences reach registered and reserved states often. */
const HOME_KEYS = [0xa1a1_0000_0000_00a1n, 0xb2b2_0000_0000_00b2n, 0xc3c3_0000_0000_00c3n];
/** A key nobody registers, and the largest key. */
const STRAY_KEYS = [0x5a5a_5a5a_5a5a_5a5an, 0xffff_ffff_ffff_ffffn];
/** SPC types LIO supports, and codes it must refuse (obsolete 0, 2, 4; reserved 9h–Fh). */
const VALID_TYPES = [1, 3, 5, 6, 7, 8];
const INVALID_TYPES = [0, 2, 4, 9, 15];
/**
 * PRIN allocation lengths: 0, below LIO's header minimums, cuts inside a header, a key, a reservation descriptor
 * and a full-status descriptor; the runner's default (no length given) leaves room for everything.
 */
const ALLOCATION_LENGTHS = [
  0, 1, 5, 6, 7, 8, 9, 12, 16, 20, 21, 22, 23, 24, 30, 40, 48, 64, 76, 100,
];

/** A key for a command from `nexus`: mostly its own, sometimes another nexus's, zero, or one nobody holds. */
function keyFrom(nexus: number): fc.Arbitrary<bigint> {
  const others = HOME_KEYS.filter((_, i) => i !== nexus);
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(HOME_KEYS[nexus] as bigint) },
    { weight: 3, arbitrary: fc.constantFrom(...others) },
    { weight: 1, arbitrary: fc.constant(0n) },
    { weight: 1, arbitrary: fc.constantFrom(...STRAY_KEYS) },
  );
}

/** The key a PREEMPT names: mostly another nexus's, sometimes zero (all registrants under AR) or its own. */
function preemptKeyFrom(nexus: number): fc.Arbitrary<bigint> {
  const others = HOME_KEYS.filter((_, i) => i !== nexus);
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...others) },
    { weight: 2, arbitrary: fc.constant(0n) },
    { weight: 2, arbitrary: fc.constant(HOME_KEYS[nexus] as bigint) },
    { weight: 1, arbitrary: fc.constantFrom(...STRAY_KEYS) },
  );
}

const reservationType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...VALID_TYPES) },
  { weight: 1, arbitrary: fc.constantFrom(...INVALID_TYPES) },
);
const scope = fc.oneof(
  { weight: 12, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.constantFrom(1, 2, 15) },
);
const rarely = fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, fc.constant(true));

/** The PROUT commands one nexus may send (SPEC_I_PT left out: a rejected one leaks an LU reference in LIO). */
function proutFrom(nexus: number): fc.Arbitrary<ScenarioCommand> {
  const key = keyFrom(nexus);
  const register = fc.record({
    kind: fc.constant('register' as const),
    key: fc.oneof({ weight: 4, arbitrary: fc.constant(0n) }, { weight: 3, arbitrary: key }),
    sark: fc.oneof({ weight: 5, arbitrary: key }, { weight: 1, arbitrary: fc.constant(0n) }),
    ignore: fc.boolean(),
    aptpl: rarely,
    allTgPt: rarely,
  });
  return fc.oneof(
    { weight: 6, arbitrary: register },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('reserve' as const),
        key,
        type: reservationType,
        scope,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('release' as const),
        key,
        type: reservationType,
        scope,
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const), key }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('preempt' as const),
        key,
        sark: preemptKeyFrom(nexus),
        type: reservationType,
        scope,
        abort: rarely,
      }),
    },
    { weight: 2, arbitrary: moveFrom(nexus) },
  );
}

/**
 * REGISTER AND MOVE from `nexus`: to another nexus through that nexus's own target port mostly (the one move
 * tcm_loop can resolve: each TPG knows only its own initiator), else through another port, to itself or to a
 * TransportID of a protocol the fabric does not use.
 */
function moveFrom(nexus: number): fc.Arbitrary<ScenarioCommand> {
  const nexusIndex = fc.integer({ min: 0, max: NEXUSES - 1 });
  return fc
    .record({
      key: keyFrom(nexus),
      sark: fc.oneof({ weight: 4, arbitrary: preemptKeyFrom(nexus) }, fc.constant(0n)),
      destination: fc.oneof({ weight: 8, arbitrary: nexusIndex }, fc.constant('foreign' as const)),
      port: fc.option(nexusIndex, { freq: 5 }),
      unreg: rarely,
    })
    .map(({ key, sark, destination, port, unreg }) => ({
      kind: 'move' as const,
      key,
      sark,
      destination: destination === 'foreign' ? { foreign: true as const } : { nexus: destination },
      relativeTargetPortOf: port ?? (destination === 'foreign' ? nexus : destination),
      unreg,
    }));
}

/** A PRIN read, with the runner's default allocation length (room for everything) or one of ALLOCATION_LENGTHS. */
const prinCommand: fc.Arbitrary<ScenarioCommand> = fc
  .tuple(
    fc.constantFrom(
      'read-keys' as const,
      'read-reservation' as const,
      'report-capabilities' as const,
      'read-full-status' as const,
    ),
    fc.option(fc.constantFrom(...ALLOCATION_LENGTHS), { freq: 2 }),
  )
  .map(([kind, length]) => (length === null ? { kind } : { kind, allocationLength: length }));

/** Any answer: a sequence expects nothing, the run compares LIO with the twin. */
const ANY = { status: 'any' } as const;

/** One step: a nexus and a command from it (PROUT, PRIN, or now and then TEST UNIT READY for unit attentions). */
const step: fc.Arbitrary<ScenarioStep> = fc
  .integer({ min: 0, max: NEXUSES - 1 })
  .chain((nexus) =>
    fc
      .oneof(
        { weight: 6, arbitrary: proutFrom(nexus) },
        { weight: 3, arbitrary: prinCommand },
        { weight: 1, arbitrary: fc.constant({ kind: 'test-unit-ready' as const }) },
      )
      .map((command) => ({ nexus, command, expect: ANY })),
  );

/**
 * RESERVE (a type REGISTER AND MOVE can move) and REGISTER AND MOVE to another nexus through its own port, both
 * from one nexus: the pair that moves a reservation when that nexus is registered and nothing is reserved yet,
 * rare among independent steps.
 */
const reserveThenMove: fc.Arbitrary<ScenarioStep[]> = fc
  .record({
    from: fc.integer({ min: 0, max: NEXUSES - 1 }),
    to: fc.integer({ min: 1, max: NEXUSES - 1 }),
    type: fc.constantFrom(1, 3, 5, 6),
    sark: fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...HOME_KEYS) },
      fc.constantFrom(...STRAY_KEYS),
    ),
    unreg: rarely,
  })
  .map(({ from, to, type, sark, unreg }) => {
    const key = HOME_KEYS[from] as bigint;
    const destination = (from + to) % NEXUSES;
    return [
      { nexus: from, command: { kind: 'reserve', key, type }, expect: ANY },
      {
        nexus: from,
        command: {
          kind: 'move',
          key,
          sark,
          destination: { nexus: destination },
          relativeTargetPortOf: destination,
          unreg,
        },
        expect: ANY,
      },
    ];
  });

/** REGISTER of a nexus's own key from an unregistered nexus: the usual opening, so later steps meet registrants. */
function opening(nexus: number): fc.Arbitrary<ScenarioStep> {
  return fc.record({ aptpl: rarely, allTgPt: rarely }).map(({ aptpl, allTgPt }) => ({
    nexus,
    command: { kind: 'register', sark: HOME_KEYS[nexus] as bigint, aptpl, allTgPt },
    expect: ANY,
  }));
}

/** Steps of one sequence: each nexus registers first with probability 4/5, then 3–20 random steps (or pairs). */
export const sequenceSteps: fc.Arbitrary<ScenarioStep[]> = fc
  .tuple(
    fc.tuple(...[0, 1, 2].map((n) => fc.option(opening(n), { freq: 5 }))),
    fc.array(
      fc.oneof(
        { weight: 12, arbitrary: step.map((s) => [s]) },
        { weight: 1, arbitrary: reserveThenMove },
      ),
      { minLength: 3, maxLength: 20 },
    ),
  )
  .map(([open, rest]) => [...open.filter((s) => s !== null), ...rest.flat()]);

/** Id of sequence `index` of `seed`. */
export function sequenceId(seed: number, index: number): string {
  return `${RANDOM_SEQUENCE_PREFIX}${seed}-${index}`;
}

/** The `count` sequences of `seed`, as scenarios (deterministic: the same on every machine). */
export function sampleSequences(seed: number, count: number): Scenario[] {
  return fc.sample(sequenceSteps, { seed, numRuns: count }).map((steps, index) => ({
    id: sequenceId(seed, index),
    title: `random PR sequence ${index} of seed ${seed}`,
    requires: { nexuses: NEXUSES },
    steps,
  }));
}

/**
 * The sequence with every PREEMPT AND ABORT that would succeed sent as PREEMPT instead: a successful PREEMPT AND
 * ABORT never completes through tcm_loop (lio-bug-preempt-abort-hang) and wedges the SCSI host for the rest of the
 * run. Whether it succeeds is the emulator's lio profile's prediction (a dry run on a fresh LU); PREEMPT changes
 * the PR state exactly as PREEMPT AND ABORT does, so the rest of the sequence means the same. Refused ones stay.
 */
export async function withoutHangingPreemptAndAbort(scenario: Scenario): Promise<Scenario> {
  const dry = await runScenarioOnEmulator(scenario, 'lio', { nexusCount: NEXUSES });
  if (dry.steps.length !== scenario.steps.length)
    throw new Error(`dry run of ${scenario.id} stopped: ${dry.failure ?? 'no reason'}`);
  const steps = scenario.steps.map((s, i) =>
    s.command.kind === 'preempt' && s.command.abort === true && dry.steps[i]?.response.status === 0
      ? { ...s, command: { ...s.command, abort: false } }
      : s,
  );
  return { ...scenario, steps };
}

/** The sequences a run sends: sampled, then made safe for tcm_loop. */
export async function randomSequences(seed: number, count: number): Promise<Scenario[]> {
  return Promise.all(sampleSequences(seed, count).map(withoutHangingPreemptAndAbort));
}
