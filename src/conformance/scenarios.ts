/**
 * The scsi-pr.md §14 checklist as data. Keys K1–K4 are arbitrary; every scenario starts from the runner's clean
 * state (no registrations, no reservation, no pending UA), so PRgeneration checks are relative (`label` /
 * `generationDelta`) except after an emulator-only power cycle.
 */
import type { Expectation, Scenario, ScenarioCommand, ScenarioStep } from './scenario.js';

const K1 = 0x1111n;
const K2 = 0x2222n;
const K3 = 0x3333n;
const K4 = 0x4444n;
/** Keys with no zero byte, so a key cut mid-way shows in the data. */
const KA = 0xa1a2a3a4a5a6a7a8n;
const KB = 0xb1b2b3b4b5b6b7b8n;
const KC = 0xc1c2c3c4c5c6c7c8n;
const KA_HEX = 'a1a2a3a4a5a6a7a8';
const KB_HEX = 'b1b2b3b4b5b6b7b8';
const KC_HEX = 'c1c2c3c4c5c6c7c8';

const WE = 1;
const EA = 3;
const WE_RO = 5;
const EA_RO = 6;
const WE_AR = 7;
const EA_AR = 8;
const ALL_TYPES = [WE, EA, WE_RO, EA_RO, WE_AR, EA_AR];

const GOOD: Expectation = { status: 'good' };
const RC: Expectation = { status: 'reservation-conflict' };
const ua = (ascq: number, asc = 0x2a): Expectation => ({ sense: { key: 6, asc, ascq } });
const illegal = (asc: number, ascq = 0): Expectation => ({ sense: { key: 5, asc, ascq } });
/** LIO: NOT READY, LOGICAL UNIT COMMUNICATION FAILURE for some PROUTs from unregistered nexuses. */
const LIO_NOT_READY: Expectation = { sense: { key: 2, asc: 0x08, ascq: 0 } };

function step(
  nexus: number,
  command: ScenarioCommand,
  expect?: Expectation,
  extra: Partial<ScenarioStep> = {},
): ScenarioStep {
  return { nexus, command, ...(expect ? { expect } : {}), ...extra };
}
const reg = (
  nexus: number,
  sark: bigint,
  more: Partial<Extract<ScenarioCommand, { kind: 'register' }>> = {},
): ScenarioStep => step(nexus, { kind: 'register', sark, ...more }, GOOD);
const reserve = (
  nexus: number,
  key: bigint,
  type: number,
  expect: Expectation = GOOD,
): ScenarioStep => step(nexus, { kind: 'reserve', key, type }, expect);
const keys = (
  nexus: number,
  expected: bigint[],
  extra: Expectation = {},
  more: Partial<ScenarioStep> = {},
): ScenarioStep => step(nexus, { kind: 'read-keys' }, { keys: expected, ...extra }, more);
const reservation = (nexus: number, expected: { key: bigint; type: number } | null): ScenarioStep =>
  step(nexus, { kind: 'read-reservation' }, { reservation: expected });
const tur = (nexus: number, expect: Expectation = GOOD): ScenarioStep =>
  step(nexus, { kind: 'test-unit-ready' }, expect);
const label = (nexus: number, name: string): ScenarioStep =>
  step(nexus, { kind: 'read-keys' }, GOOD, { label: name });

const registration: Scenario[] = [
  {
    id: 'register.unregistered-nexus',
    title:
      'REGISTER from unregistered with RK = 0, SARK ≠ 0 → GOOD; READ KEYS lists the key; PRgeneration +1',
    steps: [
      label(0, 'g0'),
      reg(0, K1),
      keys(1, [K1], { generationDelta: { from: 'g0', delta: 1 } }),
    ],
  },
  {
    id: 'register.wrong-reservation-key',
    title: 'REGISTER again from the same nexus with RK = 0 (wrong) → RC; keys unchanged',
    steps: [reg(0, K1), step(0, { kind: 'register', key: 0n, sark: K2 }, RC), keys(0, [K1])],
  },
  {
    id: 'register.replace-key-reservation-follows',
    title: 'REGISTER with correct RK and new SARK → key replaced; the reservation follows',
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(0, { kind: 'register', key: K1, sark: K2 }, GOOD),
      keys(1, [K2]),
      reservation(1, { key: K2, type: WE }),
    ],
  },
  {
    id: 'register.unregister-generation',
    title: 'REGISTER with RK = key, SARK = 0 → key removed; PRgeneration +1 (LIO: no change)',
    departures: { lio: 'LIO does not raise PRgeneration when a registration is removed' },
    steps: [
      reg(0, K1),
      label(0, 'g1'),
      step(0, { kind: 'register', key: K1, sark: 0n }, GOOD),
      step(
        0,
        { kind: 'read-keys' },
        { keys: [], generationDelta: { from: 'g1', delta: 1 } },
        {
          overrides: { lio: { generationDelta: { from: 'g1', delta: 0 } } },
        },
      ),
    ],
  },
  {
    id: 'register.zero-sark-unregistered',
    title: 'REGISTER from unregistered with SARK = 0 → GOOD, no state change',
    steps: [
      label(0, 'g0'),
      step(0, { kind: 'register', sark: 0n }, GOOD),
      keys(0, [], { generationDelta: { from: 'g0', delta: 0 } }),
    ],
  },
  {
    id: 'register.ignore-existing-key',
    title: 'REGISTER AND IGNORE with garbage RK → succeeds on registered and unregistered nexuses',
    steps: [
      reg(0, K1),
      step(0, { kind: 'register', ignore: true, key: 0xdeadn, sark: K2 }, GOOD),
      step(1, { kind: 'register', ignore: true, key: 0xbeefn, sark: K3 }, GOOD),
      keys(0, [K2, K3]),
    ],
  },
  {
    id: 'register.same-key-two-nexuses',
    title: 'Same key registered from two nexuses → READ KEYS shows it twice',
    steps: [reg(0, K1), reg(1, K1), keys(0, [K1, K1])],
  },
  {
    id: 'register.spec-i-pt',
    title:
      'SPEC_I_PT on an unregistered nexus registers caller + TransportIDs atomically, through the receiving port (LIO: each initiator through its own port)',
    requires: { specIPt: true, nexuses: 3, prin: [3] },
    departures: {
      lio: 'LIO registers each named initiator through the first target port whose TPG has an ACL for it, not the receiving port',
    },
    steps: [
      step(0, { kind: 'register', sark: K1, specIPt: [{ nexus: 1 }, { nexus: 2 }] }, GOOD),
      keys(0, [K1, K1, K1]),
      // Measured on LIO 6.1 via tcm_loop: READ FULL STATUS shows relative target ports 1, 2, 3 (each initiator's
      // own TPG, core_scsi3_decode_spec_i_port), where SPC-4 names the receiving port for ALL_TG_PT = 0.
      step(
        0,
        { kind: 'read-full-status' },
        { fullStatus: { count: 3, portsOfNexuses: [0, 0, 0] } },
        {
          overrides: { lio: { fullStatus: { count: 3, portsOfNexuses: [0, 1, 2] } } },
        },
      ),
    ],
  },
  {
    id: 'register.spec-i-pt-names-sender',
    title:
      'SPEC_I_PT whose TransportID names the sender registers it once (LIO 6.1 bug: twice; each copy needs its own unregister)',
    requires: { specIPt: true, prin: [3] },
    departures: {
      lio: 'LIO 6.1 registers the sending initiator a second time when a SPEC_I_PT TransportID names it (bugSpecIPtRegistersSenderTwice)',
    },
    steps: [
      label(1, 'g0'),
      step(0, { kind: 'register', sark: K1, specIPt: [{ nexus: 0 }] }, GOOD),
      step(
        1,
        { kind: 'read-keys' },
        { keys: [K1], generationDelta: { from: 'g0', delta: 1 } },
        { overrides: { lio: { keys: [K1, K1], generationDelta: { from: 'g0', delta: 2 } } } },
      ),
      step(
        1,
        { kind: 'read-full-status' },
        { fullStatus: { count: 1, portsOfNexuses: [0] } },
        { overrides: { lio: { fullStatus: { count: 2, portsOfNexuses: [0, 0] } } } },
      ),
      step(0, { kind: 'register', key: K1, sark: 0n }, GOOD),
      step(1, { kind: 'read-keys' }, { keys: [] }, { overrides: { lio: { keys: [K1] } } }),
      // SPC: the nexus is no longer registered, so a REGISTER naming K1 conflicts; LIO removes the second copy.
      step(0, { kind: 'register', key: K1, sark: 0n }, RC, { overrides: { lio: GOOD } }),
      keys(1, []),
    ],
  },
  {
    id: 'register.spec-i-pt-names-sender-and-others',
    title:
      'SPEC_I_PT naming other nexuses and the sender, in any order: the sender once (LIO 6.1: twice), the others once each',
    requires: { specIPt: true, prin: [3], nexuses: 3 },
    departures: {
      lio: 'LIO 6.1 registers the sending initiator a second time when a SPEC_I_PT TransportID names it (bugSpecIPtRegistersSenderTwice), +1 PRgeneration per registration',
    },
    steps: [
      label(0, 'g0'),
      step(
        1,
        { kind: 'register', sark: K2, specIPt: [{ nexus: 2 }, { nexus: 1 }, { nexus: 0 }] },
        GOOD,
      ),
      step(
        2,
        { kind: 'read-keys' },
        { keys: [K2, K2, K2], generationDelta: { from: 'g0', delta: 1 } },
        {
          overrides: {
            lio: { keys: [K2, K2, K2, K2], generationDelta: { from: 'g0', delta: 4 } },
          },
        },
      ),
      step(
        0,
        { kind: 'read-full-status' },
        { fullStatus: { count: 3, portsOfNexuses: [1, 1, 1] } },
        { overrides: { lio: { fullStatus: { count: 4, portsOfNexuses: [0, 1, 1, 2] } } } },
      ),
      reserve(1, K2, WE),
      step(0, { kind: 'medium-write' }, RC),
      reservation(2, { key: K2, type: WE }),
    ],
  },
  {
    id: 'register.spec-i-pt-bad-transport-id',
    title: 'SPEC_I_PT with one unresolvable TransportID → 26h/00h and no registration at all',
    requires: { specIPt: true },
    tags: ['lio-bug-spec-i-pt-ref-leak'],
    steps: [
      step(
        0,
        { kind: 'register', sark: K1, specIPt: [{ nexus: 1 }, { foreign: true }] },
        illegal(0x26),
      ),
      keys(0, []),
    ],
  },
  {
    id: 'register.spec-i-pt-registered-nexus',
    title: 'SPEC_I_PT on a registered nexus → 26h/00h',
    requires: { specIPt: true },
    tags: ['lio-bug-spec-i-pt-ref-leak'],
    steps: [
      reg(0, K1),
      step(0, { kind: 'register', key: K1, sark: K2, specIPt: [{ nexus: 1 }] }, illegal(0x26)),
      keys(0, [K1]),
    ],
  },
  {
    id: 'register.all-tg-pt',
    title: 'ALL_TG_PT registration is reported with ALL_TG_PT = 1 in READ FULL STATUS',
    requires: { allTgPt: true, prin: [3] },
    steps: [
      reg(0, K1, { allTgPt: true }),
      step(1, { kind: 'read-full-status' }, { fullStatus: { count: 1, allTgPt: [true] } }),
    ],
  },
  {
    id: 'register.all-tg-pt-change-needs-all-tg-pt',
    title:
      'Changing an ALL_TG_PT registration with ALL_TG_PT = 0 → GOOD (LIO: 24h/00h, key kept); with ALL_TG_PT = 1 → GOOD',
    requires: { allTgPt: true },
    departures: {
      lio: 'LIO refuses REGISTER/REGISTER AND IGNORE without ALL_TG_PT on an ALL_TG_PT registration with INVALID FIELD IN CDB',
    },
    steps: [
      reg(0, K1, { allTgPt: true }),
      // Measured on LIO 6.1 via tcm_loop (the cleanup prologue after register.all-tg-pt): CHECK CONDITION
      // 05h/24h/00h (core_scsi3_emulate_pro_register); SPC-4 ignores ALL_TG_PT for a registered nexus.
      step(0, { kind: 'register', ignore: true, sark: K2 }, GOOD, {
        overrides: { lio: illegal(0x24) },
      }),
      step(1, { kind: 'read-keys' }, { keys: [K2] }, { overrides: { lio: { keys: [K1] } } }),
      step(0, { kind: 'register', ignore: true, sark: K3, allTgPt: true }, GOOD),
      keys(1, [K3]),
    ],
  },
  {
    id: 'register.parameter-list-length',
    title: 'Parameter list length 0, 23, 25, 32 with SPEC_I_PT = 0 → 1Ah/00h',
    steps: [
      ...[0, 23, 25, 32].map((n) =>
        step(0, { kind: 'register', sark: K1, parameterListLength: n }, illegal(0x1a)),
      ),
      keys(0, []),
    ],
  },
  {
    id: 'register.table-full',
    title: 'Registration table full → 55h/04h and no partial state',
    tags: ['emulator-only'],
    requires: { nexuses: 3 },
    emulator: { maxRegistrations: 2 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(2, { kind: 'register', sark: K3 }, illegal(0x55, 0x04)),
      keys(0, [K1, K2]),
    ],
  },
];

const reservationScenarios: Scenario[] = [
  ...ALL_TYPES.map((type): Scenario => ({
    id: `reserve.type-${type}`,
    title: `RESERVE type ${type}; READ RESERVATION shows the key (0 for AR types) and type; RELEASE ends it`,
    requires: { types: [type] },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, type),
      reservation(1, { key: type === WE_AR || type === EA_AR ? 0n : K1, type }),
      step(0, { kind: 'release', key: K1, type }, GOOD),
      tur(1, type >= WE_RO ? ua(0x04) : GOOD),
      reservation(1, null),
    ],
  })),
  {
    id: 'reserve.reserved-type',
    title: 'RESERVE reserved type (Ah) → 24h/00h',
    steps: [reg(0, K1), reserve(0, K1, 0x0a, illegal(0x24)), reservation(0, null)],
  },
  {
    id: 'reserve.unsupported-all-registrants-type',
    title: 'RESERVE of an AR type on a device without it → 24h/00h',
    requires: { typesUnsupported: [WE_AR] },
    steps: [reg(0, K1), reserve(0, K1, WE_AR, illegal(0x24)), reservation(0, null)],
  },
  {
    id: 'reserve.reserved-scope',
    title: 'RESERVE with a reserved scope → 24h/00h (LIO: 26h/00h)',
    departures: { lio: 'LIO answers INVALID FIELD IN PARAMETER LIST for SCOPE ≠ LU_SCOPE' },
    steps: [
      reg(0, K1),
      step(0, { kind: 'reserve', key: K1, type: WE, scope: 2 }, illegal(0x24), {
        overrides: { lio: illegal(0x26) },
      }),
      reservation(0, null),
    ],
  },
  {
    id: 'reserve.unregistered-no-reservation',
    title:
      'RESERVE from unregistered nexus → RC (LIO: NOT READY 08h/00h while no reservation exists)',
    departures: { lio: 'LIO answers NOT READY, LOGICAL UNIT COMMUNICATION FAILURE' },
    steps: [
      step(1, { kind: 'reserve', key: K2, type: WE }, RC, { overrides: { lio: LIO_NOT_READY } }),
      reservation(0, null),
    ],
  },
  {
    id: 'reserve.unregistered-while-reserved',
    title: 'RESERVE from unregistered nexus while reserved → RC',
    steps: [reg(0, K1), reserve(0, K1, WE), step(1, { kind: 'reserve', key: K2, type: WE }, RC)],
  },
  {
    id: 'reserve.registered-non-holder-under-registrants-only',
    title:
      'RESERVE / REGISTER AND MOVE from a registered non-holder under WE-RO → RC (LIO: their own checks first: 24h/00h for a reserved TYPE, 26h/00h for a bad SCOPE or SARK 0)',
    departures: {
      lio: 'core_scsi3_pr_seq_non_holder lets registered nexuses through under RO types; the service action answers (random differential run, seed 2)',
    },
    requires: { prout: [7], types: [WE_RO] },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE_RO),
      reserve(1, K2, WE_RO, RC),
      step(1, { kind: 'reserve', key: K2, type: 2 }, RC, { overrides: { lio: illegal(0x24) } }),
      step(1, { kind: 'reserve', key: K1, type: 2 }, RC, { overrides: { lio: illegal(0x24) } }),
      step(1, { kind: 'reserve', key: K2, type: WE_RO, scope: 2 }, RC, {
        overrides: { lio: illegal(0x26) },
      }),
      step(
        1,
        { kind: 'move', key: K2, sark: 0n, destination: { nexus: 0 }, relativeTargetPortOf: 0 },
        RC,
        { overrides: { lio: illegal(0x26) } },
      ),
      step(
        1,
        { kind: 'move', key: K2, sark: K2, destination: { nexus: 0 }, relativeTargetPortOf: 0 },
        RC,
      ),
      reservation(1, { key: K1, type: WE_RO }),
      keys(1, [K1, K2]),
    ],
  },
  {
    id: 'reserve.holder-rules',
    title:
      'RESERVE by another registrant → RC; by holder same type → GOOD no-op; different type → RC',
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE),
      reserve(1, K2, WE, RC),
      reserve(0, K1, WE),
      reserve(0, K1, EA, RC),
      reservation(1, { key: K1, type: WE }),
    ],
  },
  {
    id: 'reserve.generation-unchanged',
    title: 'RESERVE and RELEASE leave PRgeneration unchanged',
    steps: [
      reg(0, K1),
      label(0, 'g1'),
      reserve(0, K1, WE),
      step(0, { kind: 'release', key: K1, type: WE }, GOOD),
      keys(0, [K1], { generationDelta: { from: 'g1', delta: 0 } }),
    ],
  },
  {
    id: 'release.no-effect',
    title: 'RELEASE with no reservation, or by a registered non-holder → GOOD, no change',
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(0, { kind: 'release', key: K1, type: WE }, GOOD),
      reserve(0, K1, WE),
      step(1, { kind: 'release', key: K2, type: WE }, GOOD),
      reservation(1, { key: K1, type: WE }),
    ],
  },
  {
    id: 'release.wrong-type',
    title: 'RELEASE by holder with wrong type → 26h/04h (LIO: RC)',
    departures: {
      lio: 'LIO answers RESERVATION CONFLICT instead of INVALID RELEASE OF PERSISTENT RESERVATION',
    },
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(0, { kind: 'release', key: K1, type: EA }, illegal(0x26, 0x04), {
        overrides: { lio: RC },
      }),
      reservation(0, { key: K1, type: WE }),
    ],
  },
  ...ALL_TYPES.map((type): Scenario => ({
    id: `release.unit-attention-type-${type}`,
    title: `RELEASE of type ${type}: ${type >= WE_RO ? 'UA 2Ah/04h on every other registrant, none on the caller' : 'no UA'}`,
    requires: { types: [type], nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, type),
      step(0, { kind: 'release', key: K1, type }, GOOD),
      tur(1, type >= WE_RO ? ua(0x04) : GOOD),
      tur(1),
      tur(0),
      tur(2),
    ],
  })),
  ...ALL_TYPES.map((type): Scenario => {
    // scsi-pr.md §6.2: [registered non-holder read, write, unregistered read, write]; AR registrants are holders.
    const matrix: Record<number, [boolean, boolean, boolean, boolean]> = {
      [WE]: [true, false, true, false],
      [EA]: [false, false, false, false],
      [WE_RO]: [true, true, true, false],
      [EA_RO]: [true, true, false, false],
      [WE_AR]: [true, true, true, false],
      [EA_AR]: [true, true, false, false],
    };
    const [regRead, regWrite, unregRead, unregWrite] = matrix[type] as [
      boolean,
      boolean,
      boolean,
      boolean,
    ];
    const ok = (allowed: boolean): Expectation => (allowed ? GOOD : RC);
    return {
      id: `access.type-${type}`,
      title: `Access matrix (§6.2) for type ${type}: read and write from holder, registered non-holder, unregistered nexus`,
      requires: { types: [type], nexuses: 3 },
      steps: [
        reg(0, K1),
        reg(1, K2),
        reserve(0, K1, type),
        step(0, { kind: 'medium-read' }, GOOD),
        step(0, { kind: 'medium-write' }, GOOD),
        step(1, { kind: 'medium-read' }, ok(regRead)),
        step(1, { kind: 'medium-write' }, ok(regWrite)),
        step(2, { kind: 'medium-read' }, ok(unregRead)),
        step(2, { kind: 'medium-write' }, ok(unregWrite)),
      ],
    };
  }),
  {
    id: 'access.always-allowed-under-exclusive-access',
    title:
      'INQUIRY, REPORT LUNS, REQUEST SENSE, PRIN, TEST UNIT READY allowed from an unregistered nexus under EA',
    requires: { types: [EA] },
    steps: [
      reg(0, K1),
      reserve(0, K1, EA),
      step(1, { kind: 'inquiry' }, GOOD),
      step(1, { kind: 'report-luns' }, GOOD),
      step(1, { kind: 'request-sense' }, GOOD),
      keys(1, [K1]),
      tur(1),
    ],
  },
  {
    id: 'unregister.holder-we',
    title: 'Unregistering the holder of WE releases the reservation without UA',
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE),
      step(0, { kind: 'register', key: K1, sark: 0n }, GOOD),
      reservation(1, null),
      tur(1),
    ],
  },
  {
    id: 'unregister.holder-registrants-only',
    title:
      'Unregistering the holder of WE-RO releases it and raises 2Ah/04h on the other registrants',
    requires: { types: [WE_RO] },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE_RO),
      step(0, { kind: 'register', key: K1, sark: 0n }, GOOD),
      tur(1, ua(0x04)),
      reservation(1, null),
    ],
  },
  {
    id: 'unregister.all-registrants',
    title:
      'AR: every registrant is R_HOLDER; the reservation survives the reserving nexus and ends with the last',
    requires: { types: [WE_AR], prin: [3] },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE_AR),
      step(0, { kind: 'read-full-status' }, { fullStatus: { count: 2, holderKeys: [K1, K2] } }),
      step(0, { kind: 'register', key: K1, sark: 0n }, GOOD),
      reservation(1, { key: 0n, type: WE_AR }),
      step(1, { kind: 'register', key: K2, sark: 0n }, GOOD),
      reservation(1, null),
    ],
  },
];

const preemptScenarios: Scenario[] = [
  {
    id: 'preempt.no-reservation',
    title:
      'PREEMPT with no reservation removes only the SARK registrations; PRgeneration +1; 2Ah/05h on the victim only',
    requires: { nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reg(2, K3),
      label(0, 'g3'),
      step(0, { kind: 'preempt', key: K1, sark: K2, type: WE }, GOOD),
      keys(0, [K1, K3], { generationDelta: { from: 'g3', delta: 1 } }),
      tur(1, ua(0x05)),
      tur(2),
      reservation(0, null),
    ],
  },
  {
    id: 'preempt.holder',
    title:
      'PREEMPT of the holder key → caller holds with the CDB type; victim 2Ah/05h; others 2Ah/04h (type changed)',
    requires: { types: [WE, EA], nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reg(2, K3),
      reserve(0, K1, WE),
      step(1, { kind: 'preempt', key: K2, sark: K1, type: EA }, GOOD),
      reservation(1, { key: K2, type: EA }),
      tur(0, ua(0x05)),
      tur(2, ua(0x04)),
      tur(2),
      tur(1),
    ],
  },
  {
    id: 'preempt.own-key',
    title: 'PREEMPT of its own key by the holder changes the type and keeps the registration',
    requires: { types: [WE, EA] },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE),
      step(0, { kind: 'preempt', key: K1, sark: K1, type: EA }, GOOD),
      reservation(0, { key: K1, type: EA }),
      keys(0, [K1, K2]),
      tur(1, ua(0x04)),
    ],
  },
  {
    id: 'preempt.unknown-key',
    title: 'PREEMPT with a SARK matching no key → RC, no state change, no generation change',
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      label(0, 'g1'),
      step(0, { kind: 'preempt', key: K1, sark: 0x9999n, type: WE }, RC),
      keys(0, [K1], { generationDelta: { from: 'g1', delta: 0 } }),
      reservation(0, { key: K1, type: WE }),
    ],
  },
  {
    id: 'preempt.reserved-type-before-key',
    title:
      'PREEMPT / PREEMPT AND ABORT with a reserved TYPE → 24h/00h even with a wrong key or from an unregistered nexus; nothing changes',
    // Found by the random differential run (docs/lio-testbed.md, seed 1): the emulator answered RC for the key.
    requires: { nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      label(0, 'g2'),
      step(1, { kind: 'preempt', key: 0n, sark: K1, type: 0x0f }, illegal(0x24)),
      step(1, { kind: 'preempt', key: K1, sark: K1, type: 0x0f, abort: true }, illegal(0x24)),
      step(2, { kind: 'preempt', key: K3, sark: K1, type: 0x09 }, illegal(0x24)),
      keys(0, [K1, K2], { generationDelta: { from: 'g2', delta: 0 } }),
      reserve(0, K1, WE),
      // With a reservation, an unregistered nexus meets table 6.3 first (RC) whatever the TYPE.
      step(2, { kind: 'preempt', key: K3, sark: K1, type: 0x0f }, RC),
      reservation(1, { key: K1, type: WE }),
    ],
  },
  {
    id: 'preempt.zero-key-all-registrants',
    title: 'PREEMPT SARK = 0 with AR → all other registrations removed, new reservation',
    requires: { types: [WE_AR, WE], nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reg(2, K3),
      reserve(0, K1, WE_AR),
      step(0, { kind: 'preempt', key: K1, sark: 0n, type: WE }, GOOD),
      keys(0, [K1]),
      reservation(0, { key: K1, type: WE }),
      tur(1, ua(0x05)),
      tur(2, ua(0x05)),
    ],
  },
  {
    id: 'preempt.zero-key-without-all-registrants',
    title: 'PREEMPT SARK = 0 without AR → 26h/00h',
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(0, { kind: 'preempt', key: K1, sark: 0n, type: WE }, illegal(0x26)),
      keys(0, [K1]),
    ],
  },
  {
    id: 'preempt.abort',
    title: 'PREEMPT AND ABORT removes the victim and takes the reservation',
    requires: { prout: [5] },
    tags: ['lio-bug-preempt-abort-hang'],
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(1, K2, WE),
      step(0, { kind: 'preempt', key: K1, sark: K2, type: WE, abort: true }, GOOD),
      keys(0, [K1]),
      reservation(0, { key: K1, type: WE }),
      tur(1, ua(0x05)),
    ],
  },
  {
    id: 'preempt.unregistered',
    title:
      'PREEMPT/CLEAR from an unregistered nexus → RC (LIO: CLEAR without reservation → NOT READY)',
    departures: {
      lio: 'LIO answers CLEAR from an unregistered nexus with NOT READY 08h/00h while no reservation exists',
    },
    steps: [
      reg(0, K1),
      step(1, { kind: 'preempt', key: K2, sark: K1, type: WE }, RC),
      step(1, { kind: 'clear', key: K2 }, RC, { overrides: { lio: LIO_NOT_READY } }),
      reserve(0, K1, WE),
      step(1, { kind: 'preempt', key: K2, sark: K1, type: WE }, RC),
      step(1, { kind: 'clear', key: K2 }, RC),
      keys(0, [K1]),
    ],
  },
  {
    id: 'clear.everything',
    title:
      'CLEAR removes every registration and the reservation, 2Ah/03h on all other ex-registrants, PRgeneration +1',
    requires: { nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reg(2, K3),
      reserve(0, K1, WE),
      label(0, 'g3'),
      step(0, { kind: 'clear', key: K1 }, GOOD),
      keys(0, [], { generationDelta: { from: 'g3', delta: 1 } }),
      reservation(0, null),
      tur(1, ua(0x03)),
      tur(2, ua(0x03)),
      tur(0),
    ],
  },
];

const moveScenarios: Scenario[] = [
  {
    id: 'move.write-exclusive',
    title:
      'Holder moves a WE reservation to another nexus; destination holds with the same type; UNREG removes the source',
    requires: { prout: [7], prin: [3] },
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(
        0,
        {
          kind: 'move',
          key: K1,
          sark: K4,
          destination: { nexus: 1 },
          relativeTargetPortOf: 1,
          unreg: true,
        },
        GOOD,
      ),
      keys(1, [K4]),
      reservation(1, { key: K4, type: WE }),
      step(1, { kind: 'medium-write' }, GOOD),
      step(0, { kind: 'medium-write' }, RC),
    ],
  },
  {
    id: 'move.non-holder',
    title: 'REGISTER AND MOVE by a registered non-holder → RC',
    requires: { prout: [7], prin: [3], nexuses: 3 },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE),
      step(
        1,
        { kind: 'move', key: K2, sark: K4, destination: { nexus: 2 }, relativeTargetPortOf: 2 },
        RC,
      ),
      reservation(0, { key: K1, type: WE }),
    ],
  },
  {
    id: 'move.all-registrants',
    title: 'REGISTER AND MOVE with an AR reservation → RC',
    requires: { prout: [7], prin: [3], types: [WE_AR] },
    steps: [
      reg(0, K1),
      reserve(0, K1, WE_AR),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 1 }, relativeTargetPortOf: 1 },
        RC,
      ),
    ],
  },
  {
    id: 'move.zero-key',
    title: 'REGISTER AND MOVE with SARK = 0 → 26h/00h',
    requires: { prout: [7], prin: [3] },
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(
        0,
        { kind: 'move', key: K1, sark: 0n, destination: { nexus: 1 }, relativeTargetPortOf: 1 },
        illegal(0x26),
      ),
    ],
  },
  {
    id: 'move.own-transport-id',
    title: 'REGISTER AND MOVE naming its own TransportID → 26h/00h',
    requires: { prout: [7], prin: [3] },
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 0 }, relativeTargetPortOf: 0 },
        illegal(0x26),
      ),
      reservation(0, { key: K1, type: WE }),
    ],
  },
  {
    id: 'move.initiator-unknown-to-port',
    title:
      'REGISTER AND MOVE naming an initiator with no ACL on the named target port → 26h/00h, nothing moves; through its own port → moved',
    requires: { prout: [7], prin: [3], nexuses: 3 },
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      label(0, 'g1'),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 1 }, relativeTargetPortOf: 2 },
        illegal(0x26),
      ),
      step(
        0,
        {
          kind: 'move',
          key: K1,
          sark: K4,
          destination: { nexus: 2 },
          relativeTargetPortOf: 1,
          unreg: true,
        },
        illegal(0x26),
      ),
      keys(1, [K1], { generationDelta: { from: 'g1', delta: 0 } }),
      reservation(2, { key: K1, type: WE }),
      step(1, { kind: 'medium-write' }, RC),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 1 }, relativeTargetPortOf: 1 },
        GOOD,
      ),
      reservation(2, { key: K4, type: WE }),
      keys(2, [K1, K4]),
    ],
  },
  {
    id: 'move.initiator-unknown-to-port-without-reservation',
    title:
      'REGISTER AND MOVE to an initiator the target port does not know, with no reservation → 26h/00h (the TransportID is checked first)',
    requires: { prout: [7], prin: [3], nexuses: 3, types: [EA_RO] },
    steps: [
      reg(0, K1),
      reg(2, K3),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 2 }, relativeTargetPortOf: 1 },
        illegal(0x26),
      ),
      keys(0, [K1, K3]),
      reserve(0, K1, EA_RO),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 0 }, relativeTargetPortOf: 2 },
        illegal(0x26),
      ),
      reservation(2, { key: K1, type: EA_RO }),
    ],
  },
  {
    id: 'move.no-reservation',
    title: 'REGISTER AND MOVE without a reservation → RC (LIO: 24h/00h)',
    requires: { prout: [7], prin: [3] },
    departures: { lio: 'LIO answers INVALID FIELD IN CDB when no reservation exists' },
    steps: [
      reg(0, K1),
      step(
        0,
        { kind: 'move', key: K1, sark: K4, destination: { nexus: 1 }, relativeTargetPortOf: 1 },
        RC,
        {
          overrides: { lio: illegal(0x24) },
        },
      ),
      keys(0, [K1]),
    ],
  },
];

const prinScenarios: Scenario[] = [
  {
    id: 'prin.read-keys-truncated',
    title:
      'READ KEYS with allocation length 8 → only the header, ADDITIONAL LENGTH still full size',
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(
        0,
        { kind: 'read-keys', allocationLength: 8 },
        { dataInLength: 8, additionalLength: 16 },
      ),
    ],
  },
  {
    id: 'prin.read-keys-additional-length',
    title: 'READ KEYS ADDITIONAL LENGTH = data-in size − 8 when nothing is truncated',
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(0, { kind: 'read-keys' }, { dataInLength: 24, additionalLength: 16 }),
    ],
  },
  {
    id: 'prin.short-allocation-length',
    title: 'READ KEYS with allocation length 4 → 4 bytes (LIO: 24h/00h)',
    departures: { lio: 'LIO rejects PRIN allocation lengths below the 8-byte header' },
    steps: [
      reg(0, K1),
      step(
        0,
        { kind: 'read-keys', allocationLength: 4 },
        { dataInLength: 4 },
        { overrides: { lio: illegal(0x24) } },
      ),
    ],
  },
  {
    id: 'prin.reserved-service-actions',
    title: 'PRIN SA 04h–1Fh → 24h/00h',
    steps: [0x04, 0x10, 0x1f].map((sa) =>
      step(0, { kind: 'prin', serviceAction: sa }, illegal(0x24)),
    ),
  },
  {
    id: 'prin.report-capabilities',
    title:
      'REPORT CAPABILITIES LENGTH = 8; ALLOW COMMANDS ≤ 5; type mask has no undefined bits and matches the profile',
    requires: { prin: [2] },
    steps: [
      step(
        0,
        { kind: 'report-capabilities' },
        { capabilities: { matchesProfile: true, ptplA: false } },
        {
          overrides: {
            lio: {
              capabilities: { matchesProfile: true, ptplA: false },
              dataInHex: '00081d90ea010000',
            },
          },
        },
      ),
    ],
  },
  {
    id: 'prin.read-full-status',
    title: 'READ FULL STATUS descriptor count = registration count; TransportIDs decode',
    requires: { prin: [3] },
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(0, { kind: 'read-full-status' }, { fullStatus: { count: 2, holderKeys: [] } }),
    ],
  },
  {
    id: 'prin.read-full-status-truncated',
    title:
      'READ FULL STATUS cut by the allocation length: bytes, ADDITIONAL LENGTH of all (SPC) vs descriptors whose TransportID fits (LIO); 24-byte TransportIDs assumed',
    requires: { prin: [3] },
    departures: {
      lio: 'LIO writes a descriptor while its TransportID length plus the descriptors before it fit the allocation length (header and descriptor header forgotten), and ADDITIONAL LENGTH counts only those',
    },
    steps: [
      reg(0, K1),
      reg(1, K2),
      // Measured on LIO 6.1 via tcm_loop: 76 bytes (the second descriptor cut mid-way), ADDITIONAL LENGTH 96 —
      // the same bytes as SPC, because 24 + 48 ≤ 76 lets LIO write the second descriptor.
      step(
        0,
        { kind: 'read-full-status', allocationLength: 76 },
        { dataInLength: 76, additionalLength: 96 },
      ),
      // 24 + 48 > 40: LIO stops after the first descriptor (core_scsi3_pri_read_full_status).
      step(
        0,
        { kind: 'read-full-status', allocationLength: 40 },
        { dataInLength: 40, additionalLength: 96 },
        {
          overrides: { lio: { dataInLength: 40, additionalLength: 48 } },
        },
      ),
    ],
  },
];

/** A PRIN answer cut at `length` bytes: data-in length, ADDITIONAL LENGTH, and the bytes from offset 4 on. */
function prinCut(length: number, additionalLength: number, fromByte4: string): Expectation {
  return { dataInLength: length, additionalLength, dataInAt: { offset: 4, hex: fromByte4 } };
}
const zeros = (bytes: number): string => '00'.repeat(bytes);
const LIO_WHOLE_ENTRIES =
  'LIO transfers the allocation length but writes only whole keys (READ KEYS) and the reservation key and type only when 22 bytes fit (READ RESERVATION); the rest is zero';

/** scsi-pr.md §8.2: PRIN data cut by the allocation length inside a key or the reservation descriptor. */
const prinCutScenarios: Scenario[] = [
  {
    id: 'prin.read-keys-cut-inside-key',
    title:
      'READ KEYS with an allocation length ending inside a key: the bytes that fit (LIO: whole keys only, the rest zero)',
    departures: { lio: LIO_WHOLE_ENTRIES },
    steps: [
      reg(0, KA),
      reg(1, KB),
      ...(
        [
          [12, `00000010${KA_HEX.slice(0, 8)}`, `00000010${zeros(4)}`],
          [20, `00000010${KA_HEX}${KB_HEX.slice(0, 8)}`, `00000010${KA_HEX}${zeros(4)}`],
          [23, `00000010${KA_HEX}${KB_HEX.slice(0, 14)}`, `00000010${KA_HEX}${zeros(7)}`],
        ] as const
      ).map(([length, spc, lio]) =>
        step(0, { kind: 'read-keys', allocationLength: length }, prinCut(length, 16, spc), {
          overrides: { lio: prinCut(length, 16, lio) },
        }),
      ),
      step(
        1,
        { kind: 'read-keys', allocationLength: 24 },
        prinCut(24, 16, `00000010${KA_HEX}${KB_HEX}`),
      ),
    ],
  },
  {
    id: 'prin.read-keys-cut-three-keys',
    title:
      'READ KEYS of three keys cut at 9, 16 and 30 bytes from another nexus; ADDITIONAL LENGTH stays 24',
    requires: { nexuses: 3 },
    departures: { lio: LIO_WHOLE_ENTRIES },
    steps: [
      reg(0, KA),
      reg(1, KB),
      reg(2, KC),
      step(
        2,
        { kind: 'read-keys', allocationLength: 9 },
        prinCut(9, 24, `00000018${KA_HEX.slice(0, 2)}`),
        { overrides: { lio: prinCut(9, 24, `00000018${zeros(1)}`) } },
      ),
      step(2, { kind: 'read-keys', allocationLength: 16 }, prinCut(16, 24, `00000018${KA_HEX}`)),
      step(
        1,
        { kind: 'read-keys', allocationLength: 30 },
        prinCut(30, 24, `00000018${KA_HEX}${KB_HEX}${KC_HEX.slice(0, 12)}`),
        { overrides: { lio: prinCut(30, 24, `00000018${KA_HEX}${KB_HEX}${zeros(6)}`) } },
      ),
    ],
  },
  {
    id: 'prin.read-reservation-cut',
    title:
      'READ RESERVATION (EA) cut at 12, 16, 21 and 22 bytes: the bytes that fit (LIO: key and type only from 22 bytes on)',
    requires: { types: [EA] },
    departures: { lio: LIO_WHOLE_ENTRIES },
    steps: [
      reg(0, KA),
      reg(1, KB),
      reserve(0, KA, EA),
      ...(
        [
          [12, `00000010${KA_HEX.slice(0, 8)}`],
          [16, `00000010${KA_HEX}`],
          [21, `00000010${KA_HEX}${zeros(5)}`],
        ] as const
      ).map(([length, spc]) =>
        step(
          length === 16 ? 1 : 0,
          { kind: 'read-reservation', allocationLength: length },
          prinCut(length, 16, spc),
          { overrides: { lio: prinCut(length, 16, `00000010${zeros(length - 8)}`) } },
        ),
      ),
      step(
        1,
        { kind: 'read-reservation', allocationLength: 22 },
        prinCut(22, 16, `00000010${KA_HEX}${zeros(5)}03`),
      ),
    ],
  },
  {
    id: 'prin.read-reservation-cut-other-types',
    title:
      'READ RESERVATION cut at 20 and 22 bytes under WE-RO (holder key) and EA-AR (key 0), from a non-holder',
    requires: { types: [WE_RO, EA_AR], nexuses: 3 },
    departures: { lio: LIO_WHOLE_ENTRIES },
    steps: [
      reg(0, KA),
      reg(1, KB),
      reserve(0, KA, WE_RO),
      step(
        2,
        { kind: 'read-reservation', allocationLength: 20 },
        prinCut(20, 16, `00000010${KA_HEX}${zeros(4)}`),
        { overrides: { lio: prinCut(20, 16, `00000010${zeros(12)}`) } },
      ),
      step(
        2,
        { kind: 'read-reservation', allocationLength: 22 },
        prinCut(22, 16, `00000010${KA_HEX}${zeros(5)}05`),
      ),
      step(0, { kind: 'release', key: KA, type: WE_RO }, GOOD),
      tur(1, ua(0x04)),
      reserve(1, KB, EA_AR),
      step(
        1,
        { kind: 'read-reservation', allocationLength: 21 },
        prinCut(21, 16, `00000010${zeros(13)}`),
      ),
      step(
        0,
        { kind: 'read-reservation', allocationLength: 22 },
        prinCut(22, 16, `00000010${zeros(13)}08`),
      ),
    ],
  },
];

/** READ CAPACITY(10), READ CAPACITY(16) (SERVICE ACTION IN(16) 9Eh/10h) and SYNCHRONIZE CACHE(10) CDBs. */
const READ_CAPACITY_10: ScenarioCommand = {
  kind: 'raw',
  cdb: '25000000000000000000',
  dataInLength: 8,
};
const readCapacity16 = (allocationLength: number, serviceAction = 0x10): ScenarioCommand => ({
  kind: 'raw',
  cdb: `9e${serviceAction.toString(16).padStart(2, '0')}${zeros(8)}${allocationLength.toString(16).padStart(8, '0')}0000`,
  dataInLength: allocationLength,
});
const SYNCHRONIZE_CACHE_10: ScenarioCommand = {
  kind: 'raw',
  cdb: '35000000000000000000',
  dataInLength: 0,
};
/** MODE SENSE(6), all pages, allocation length 0 (no data to compare across devices). */
const MODE_SENSE_6: ScenarioCommand = { kind: 'raw', cdb: '1a003f000000', dataInLength: 0 };

const readCapacityScenarios: Scenario[] = [
  {
    id: 'device.read-capacity',
    title:
      'READ CAPACITY(10) and (16) answered on a disk LU (8 and 32 bytes, cut by the allocation length); SERVICE ACTION IN(16) with another SA → 24h/00h',
    requires: { deviceTypes: [0], nexuses: 1 },
    steps: [
      step(0, READ_CAPACITY_10, { dataInLength: 8 }),
      step(0, readCapacity16(32), { dataInLength: 32 }),
      step(0, readCapacity16(12), { dataInLength: 12 }),
      step(0, readCapacity16(32, 0x1f), illegal(0x24)),
    ],
  },
];

/**
 * Access to the commands of the §6.2 table beyond READ/WRITE, per type, from the holder (nexus 0), a registered
 * non-holder (1) and an unregistered nexus (2). SPC-4 lets READ CAPACITY through for everyone; LIO classes it (and
 * SYNCHRONIZE CACHE, which has no data) by data direction (core_scsi3_pr_seq_non_holder).
 */
const otherCommandAccessScenarios: Scenario[] = ALL_TYPES.map((type): Scenario => {
  const we = type === WE || type === WE_RO || type === WE_AR;
  const registrantsPass = type !== WE && type !== EA;
  const ok = (allowed: boolean): Expectation => (allowed ? GOOD : RC);
  // [registered non-holder, unregistered] for each class.
  const read: [boolean, boolean] = [we || registrantsPass, we];
  const write: [boolean, boolean] = [registrantsPass, false];
  const noData: [boolean, boolean] = [registrantsPass, we];
  const modeSense: [boolean, boolean] = [true, we];
  const lioDiffers = (spc: boolean, lio: boolean): Partial<ScenarioStep> =>
    spc === lio ? {} : { overrides: { lio: ok(lio) } };
  const steps: ScenarioStep[] = [reg(0, K1), reg(1, K2), reserve(0, K1, type)];
  for (const who of [0, 1, 2] as const) {
    const pick = (pair: [boolean, boolean]): boolean =>
      who === 0 ? true : who === 1 ? pair[0] : pair[1];
    steps.push(
      step(who, READ_CAPACITY_10, GOOD, lioDiffers(true, pick(read))),
      step(who, readCapacity16(32), GOOD, lioDiffers(true, pick(read))),
      step(who, SYNCHRONIZE_CACHE_10, ok(pick(write)), lioDiffers(pick(write), pick(noData))),
      step(who, MODE_SENSE_6, ok(pick(modeSense))),
    );
  }
  return {
    id: `access.other-commands-type-${type}`,
    title: `Type ${type}: READ CAPACITY(10)/(16) (SPC: allowed for all; LIO: read class), SYNCHRONIZE CACHE(10) (SPC: write class; LIO: no data) and MODE SENSE(6) from holder, registered non-holder, unregistered nexus`,
    requires: { types: [type], nexuses: 3, deviceTypes: [0] },
    departures: {
      lio: 'LIO classes READ CAPACITY(10)/(16) as reads and SYNCHRONIZE CACHE by its data direction (none): under EA types a non-holder gets RESERVATION CONFLICT for READ CAPACITY',
    },
    steps,
  };
});

/** PROUT with service action `sa` and a 24-byte parameter list carrying RESERVATION KEY `key`. */
const proutServiceAction = (sa: number, key: bigint): ScenarioCommand => ({
  kind: 'raw',
  cdb: `5f${sa.toString(16).padStart(2, '0')}0000000000001800`,
  dataOut: `${key.toString(16).padStart(16, '0')}${zeros(16)}`,
  dataInLength: 0,
});
/** REQUEST SENSE with DESC = 1, allocation length 96. */
const REQUEST_SENSE_DESCRIPTOR: ScenarioCommand = {
  kind: 'raw',
  cdb: '030100006000',
  dataInLength: 96,
};
/** Fixed-format sense data of REQUEST SENSE with this ASC/ASCQ (bytes 12–13; 00h/00h is NO SENSE). */
const senseData = (asc: number, ascq: number): Expectation => ({
  status: 'good',
  dataInAt: {
    offset: 12,
    hex: `${asc.toString(16).padStart(2, '0')}${ascq.toString(16).padStart(2, '0')}`,
  },
});
const LIO_UA_QUEUE =
  'LIO reports the oldest queued unit attention and discards the rest (core_scsi3_ua_for_check_condition, UA_INTLCK_CTRL 00b)';

/** Several unit attentions queued for one nexus (scsi-pr.md §7.12). */
const unitAttentionQueueScenarios: Scenario[] = [
  {
    id: 'unit-attention.queued-oldest-first',
    title:
      'RESERVATIONS RELEASED then REGISTRATIONS PREEMPTED queued: TEST UNIT READY reports the first, then the second (LIO: the first, the rest discarded)',
    requires: { types: [WE_RO], nexuses: 3 },
    departures: { lio: LIO_UA_QUEUE },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reg(2, K3),
      reserve(0, K1, WE_RO),
      step(0, { kind: 'release', key: K1, type: WE_RO }, GOOD),
      step(0, { kind: 'preempt', key: K1, sark: K2, type: WE }, GOOD),
      tur(1, ua(0x04)),
      step(1, { kind: 'test-unit-ready' }, ua(0x05), { overrides: { lio: GOOD } }),
      tur(1),
      tur(2, ua(0x04)),
      tur(2),
    ],
  },
  {
    id: 'unit-attention.queued-request-sense',
    title:
      'Queued unit attentions and REQUEST SENSE: it returns the oldest, then the next (LIO: the oldest, then NO SENSE); a duplicate is queued once',
    requires: { types: [WE_RO, EA_RO], nexuses: 3 },
    departures: { lio: LIO_UA_QUEUE },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reg(2, K3),
      reserve(0, K1, WE_RO),
      step(0, { kind: 'release', key: K1, type: WE_RO }, GOOD),
      reserve(0, K1, EA_RO),
      step(0, { kind: 'release', key: K1, type: EA_RO }, GOOD),
      reserve(0, K1, WE),
      step(0, { kind: 'preempt', key: K1, sark: K3, type: WE }, GOOD),
      step(0, { kind: 'clear', key: K1 }, GOOD),
      // Nexus 1: RELEASED (once, the repeat is a duplicate), then PREEMPTED by the CLEAR.
      step(1, { kind: 'request-sense' }, senseData(0x2a, 0x04)),
      step(1, { kind: 'request-sense' }, senseData(0x2a, 0x03), {
        overrides: { lio: senseData(0, 0) },
      }),
      step(1, { kind: 'request-sense' }, senseData(0, 0)),
      tur(1),
      // Nexus 2: RELEASED, then REGISTRATIONS PREEMPTED (it was removed before the CLEAR).
      tur(2, ua(0x04)),
      step(2, { kind: 'request-sense' }, senseData(0x2a, 0x05), {
        overrides: { lio: senseData(0, 0) },
      }),
      tur(2),
    ],
  },
];

const LIO_PARSE_FIRST =
  'LIO checks the operation code (and REQUEST SENSE rejects DESC = 1) before it looks at unit attentions, which stay pending';

/** What wins when a unit attention is pending (SAM unit attention rules; scsi-pr.md §7.12). */
const unitAttentionPrecedenceScenarios: Scenario[] = [
  {
    id: 'unit-attention.precedence-unsupported-opcode',
    title:
      'Unit attention pending, unsupported operation code: the unit attention is reported (LIO: 20h/00h and the unit attention stays)',
    departures: { lio: LIO_PARSE_FIRST },
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(0, { kind: 'preempt', key: K1, sark: K2, type: WE }, GOOD),
      step(1, { kind: 'raw', cdb: 'ff0000000000', dataInLength: 0 }, ua(0x05), {
        overrides: { lio: illegal(0x20) },
      }),
      step(1, { kind: 'raw', cdb: '020000000000', dataInLength: 0 }, illegal(0x20)),
      step(1, { kind: 'test-unit-ready' }, GOOD, { overrides: { lio: ua(0x05) } }),
      step(1, { kind: 'raw', cdb: 'ff0000000000', dataInLength: 0 }, illegal(0x20)),
      tur(1),
    ],
  },
  {
    id: 'unit-attention.precedence-request-sense-descriptor',
    title:
      'REQUEST SENSE with DESC = 1: descriptor sense returning the unit attention (LIO: 24h/00h, with or without one pending, and it stays)',
    departures: { lio: LIO_PARSE_FIRST },
    steps: [
      step(
        0,
        REQUEST_SENSE_DESCRIPTOR,
        { dataInAt: { offset: 0, hex: '72000000' } },
        {
          overrides: { lio: illegal(0x24) },
        },
      ),
      reg(0, K1),
      reg(1, K2),
      step(0, { kind: 'clear', key: K1 }, GOOD),
      step(
        1,
        REQUEST_SENSE_DESCRIPTOR,
        { dataInAt: { offset: 0, hex: '72062a03' } },
        {
          overrides: { lio: illegal(0x24) },
        },
      ),
      step(1, { kind: 'request-sense' }, senseData(0, 0), {
        overrides: { lio: senseData(0x2a, 0x03) },
      }),
      tur(1),
    ],
  },
  {
    id: 'unit-attention.precedence-exempt-and-cdb-errors',
    title:
      'Unit attention pending: INQUIRY and REPORT LUNS run and leave it; a PRIN with a reserved service action reports it (the CDB is checked at execution)',
    steps: [
      reg(0, K1),
      reg(1, K2),
      step(0, { kind: 'preempt', key: K1, sark: K2, type: WE }, GOOD),
      step(1, { kind: 'inquiry' }, GOOD),
      step(1, { kind: 'report-luns' }, GOOD),
      step(1, { kind: 'prin', serviceAction: 0x10 }, ua(0x05)),
      step(1, { kind: 'prin', serviceAction: 0x10 }, illegal(0x24)),
      tur(1),
    ],
  },
];

const LIO_UNKNOWN_SA_CONFLICT =
  'LIO checks reservation conflicts before the service action: an unknown PROUT service action from a non-holder gets RESERVATION CONFLICT (core_scsi3_pr_seq_non_holder)';

/** PROUT with a service action the device does not support, while a reservation is held (scsi-pr.md §7.1). */
const unknownServiceActionScenarios: Scenario[] = [
  ...[EA, WE].map((type): Scenario => ({
    id: `prout.unsupported-service-action-type-${type}`,
    title: `PROUT SA 08h/1Fh under a type ${type} reservation: 24h/00h from the holder, a registered non-holder and an unregistered nexus (LIO: RESERVATION CONFLICT from non-holders); 24h/00h once released`,
    requires: { types: [type], nexuses: 3 },
    departures: { lio: LIO_UNKNOWN_SA_CONFLICT },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, type),
      step(0, proutServiceAction(0x08, K1), illegal(0x24)),
      step(1, proutServiceAction(0x08, K2), illegal(0x24), { overrides: { lio: RC } }),
      step(2, proutServiceAction(0x1f, 0n), illegal(0x24), { overrides: { lio: RC } }),
      step(1, proutServiceAction(0x1f, K2), illegal(0x24), { overrides: { lio: RC } }),
      step(0, proutServiceAction(0x1f, K1), illegal(0x24)),
      reservation(2, { key: K1, type }),
      step(0, { kind: 'release', key: K1, type }, GOOD),
      step(2, proutServiceAction(0x08, 0n), illegal(0x24)),
      step(1, proutServiceAction(0x1f, K2), illegal(0x24)),
    ],
  })),
  {
    id: 'prout.unsupported-service-action-all-registrants',
    title:
      'EA-AR: every registrant holds the reservation, so SA 08h → 24h/00h from any registrant (LIO: only from the one that reserved; the others get RESERVATION CONFLICT) and RESERVE → GOOD',
    requires: { types: [EA_AR], nexuses: 3 },
    departures: {
      lio: 'LIO treats only the registration that reserved an AR reservation as its holder when a PROUT service action is unknown to it',
    },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, EA_AR),
      step(0, proutServiceAction(0x08, K1), illegal(0x24)),
      step(1, proutServiceAction(0x08, K2), illegal(0x24), { overrides: { lio: RC } }),
      step(2, proutServiceAction(0x08, 0n), illegal(0x24), { overrides: { lio: RC } }),
      // Measured on LIO 6.1 via tcm_loop: GOOD (core_scsi3_pr_seq_non_holder lets registrants through under AR
      // types; only an unknown service action returns before that).
      step(1, { kind: 'reserve', key: K2, type: EA_AR }, GOOD),
      reservation(2, { key: 0n, type: EA_AR }),
    ],
  },
];

const persistenceScenarios: Scenario[] = [
  {
    id: 'aptpl.power-cycle-keeps-state',
    title:
      'APTPL = 1 then power cycle → registrations and reservation restored, PRgeneration 0, 29h/00h on every nexus',
    tags: ['emulator-only'],
    requires: { aptpl: true },
    steps: [
      reg(0, K1, { aptpl: true }),
      reg(1, K2, { aptpl: true }),
      reserve(0, K1, WE),
      step(0, { kind: 'power-cycle' }),
      tur(0, ua(0x00, 0x29)),
      tur(1, ua(0x00, 0x29)),
      keys(0, [K1, K2], { generation: 0 }),
      reservation(1, { key: K1, type: WE }),
    ],
  },
  {
    id: 'aptpl.ptpl-active',
    title: 'PTPL_A follows the APTPL bit of the last REGISTER',
    requires: { aptpl: true, prin: [2] },
    steps: [
      reg(0, K1, { aptpl: true }),
      step(0, { kind: 'report-capabilities' }, { capabilities: { ptplA: true } }),
      step(0, { kind: 'register', key: K1, sark: K2 }, GOOD),
      step(0, { kind: 'report-capabilities' }, { capabilities: { ptplA: false } }),
    ],
  },
  {
    id: 'aptpl.power-cycle-without-aptpl',
    title: 'APTPL = 0 then power cycle → everything gone',
    tags: ['emulator-only'],
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(0, { kind: 'power-cycle' }),
      tur(0, ua(0x00, 0x29)),
      keys(0, [], { generation: 0 }),
      reservation(0, null),
    ],
  },
  {
    id: 'reset.keeps-persistent-reservation',
    title: 'LU reset: PR state kept; 29h/xx delivered; SPC-2 reservation dropped',
    tags: ['emulator-only'],
    steps: [
      step(1, { kind: 'reserve6' }, GOOD),
      step(1, { kind: 'reset' }),
      tur(1, ua(0x03, 0x29)),
      tur(0, ua(0x03, 0x29)),
      step(0, { kind: 'reserve6' }, GOOD),
      step(0, { kind: 'release6' }, GOOD),
      reg(0, K1),
      reserve(0, K1, WE),
      step(0, { kind: 'reset' }),
      tur(0, ua(0x03, 0x29)),
      keys(0, [K1]),
      reservation(0, { key: K1, type: WE }),
    ],
  },
  {
    id: 'nexus-loss.keeps-persistent-reservation',
    title: 'I_T nexus loss: PR state kept; 29h/07h on that nexus only',
    tags: ['emulator-only'],
    steps: [
      reg(0, K1),
      reserve(0, K1, WE),
      step(0, { kind: 'nexus-loss' }),
      tur(0, ua(0x07, 0x29)),
      tur(1),
      keys(0, [K1]),
      reservation(0, { key: K1, type: WE }),
    ],
  },
  {
    id: 'spc2.reserve-vs-registrations',
    title: 'RESERVE(6) while registrations exist → RC; by the PR holder → GOOD no-op (CRH = 1)',
    steps: [
      reg(0, K1),
      step(1, { kind: 'reserve6' }, RC),
      reserve(0, K1, WE),
      step(0, { kind: 'reserve6' }, GOOD),
      step(0, { kind: 'release6' }, GOOD),
      reservation(1, { key: K1, type: WE }),
    ],
  },
  {
    id: 'spc2.crh-registered-non-holder',
    title:
      'CRH = 1: RELEASE(6)/RESERVE(6) from a registered non-holder under RO/AR → GOOD no-op (LIO: RC); from the holder → GOOD',
    requires: { types: [WE_RO, EA_AR] },
    departures: {
      lio: 'LIO grants the CRH exception only to the registration that holds the reservation (pr_res_holder), so other registrants get RESERVATION CONFLICT under RO and AR types too',
    },
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(0, K1, WE_RO),
      // Measured on LIO 6.1 via tcm_loop (cleanup prologue after access.type-5 and access.type-7): RESERVATION
      // CONFLICT for RELEASE(6) from the registered non-holder (target_check_scsi2_reservation_conflict).
      step(1, { kind: 'release6' }, GOOD, { overrides: { lio: RC } }),
      step(1, { kind: 'reserve6' }, GOOD, { overrides: { lio: RC } }),
      step(0, { kind: 'release6' }, GOOD),
      reservation(1, { key: K1, type: WE_RO }),
      step(0, { kind: 'release', key: K1, type: WE_RO }, GOOD),
      tur(1, ua(0x04)),
      reserve(0, K1, EA_AR),
      step(1, { kind: 'release6' }, GOOD, { overrides: { lio: RC } }),
      step(0, { kind: 'release6' }, GOOD),
      step(0, { kind: 'reserve6' }, GOOD),
      reservation(1, { key: 0n, type: EA_AR }),
    ],
  },
  {
    id: 'spc2.reservation-blocks-persistent-reserve',
    title:
      'While an SPC-2 reservation is held every PRIN/PROUT gets RC; others get RC for media commands',
    steps: [
      step(0, { kind: 'reserve6' }, GOOD),
      step(1, { kind: 'read-keys' }, RC),
      step(0, { kind: 'read-keys' }, RC),
      step(1, { kind: 'register', sark: K2 }, RC),
      step(1, { kind: 'medium-read' }, RC),
      step(1, { kind: 'inquiry' }, GOOD),
      step(0, { kind: 'release6' }, GOOD),
      keys(1, []),
    ],
  },
  {
    id: 'unit-attention.blocks-next-command',
    title:
      'A pending UA makes the next PROUT fail with CHECK CONDITION and not execute; the retried command succeeds',
    steps: [
      reg(0, K1),
      reg(1, K2),
      reserve(1, K2, WE),
      step(0, { kind: 'preempt', key: K1, sark: K2, type: WE }, GOOD),
      step(1, { kind: 'register', ignore: true, sark: K3 }, ua(0x05)),
      keys(1, [K1]),
      step(1, { kind: 'register', ignore: true, sark: K3 }, GOOD),
      keys(1, [K1, K3]),
    ],
  },
];

const deviceScenarios: Scenario[] = [
  {
    id: 'device.inquiry-and-vpd',
    title:
      'INQUIRY standard and VPD 00h/80h/83h answered (LIO: also 86h, B0h–B3h); unsupported VPD page → 24h/00h',
    departures: { lio: 'LIO also answers VPD 86h and B0h–B3h' },
    steps: [
      step(0, { kind: 'inquiry' }, GOOD),
      step(0, { kind: 'inquiry', page: 0x00 }, GOOD),
      step(0, { kind: 'inquiry', page: 0x80 }, GOOD),
      step(0, { kind: 'inquiry', page: 0x83 }, GOOD),
      // LIO lists and answers Extended INQUIRY Data and the SBC pages B0h–B3h as well (target_core_spc.c).
      ...[0x86, 0xb0, 0xb1, 0xb2, 0xb3].map((page) =>
        step(0, { kind: 'inquiry', page }, illegal(0x24), { overrides: { lio: GOOD } }),
      ),
      step(0, { kind: 'inquiry', page: 0xc7 }, illegal(0x24)),
    ],
  },
  {
    id: 'device.invalid-opcode',
    title: 'An unknown operation code → 5/20/00',
    steps: [step(0, { kind: 'raw', cdb: 'ff0000000000', dataInLength: 0 }, illegal(0x20))],
  },
];

/** Every conformance scenario, in checklist order. */
export const SCENARIOS: readonly Scenario[] = [
  ...registration,
  ...reservationScenarios,
  ...preemptScenarios,
  ...moveScenarios,
  ...prinScenarios,
  ...prinCutScenarios,
  ...readCapacityScenarios,
  ...otherCommandAccessScenarios,
  {
    id: 'prin.unsupported-service-actions',
    title:
      'REPORT CAPABILITIES / READ FULL STATUS answered, or 24h/00h on a device that lacks them',
    requires: { nexuses: 1 },
    departures: {
      'superloader-changer': 'the SuperLoader documents only READ KEYS and READ RESERVATION',
    },
    steps: [
      step(0, { kind: 'report-capabilities' }, GOOD, {
        overrides: { 'superloader-changer': illegal(0x24) },
      }),
      step(0, { kind: 'read-full-status' }, GOOD, {
        overrides: { 'superloader-changer': illegal(0x24) },
      }),
    ],
  },
  ...persistenceScenarios,
  ...unitAttentionQueueScenarios,
  ...unitAttentionPrecedenceScenarios,
  ...unknownServiceActionScenarios,
  ...deviceScenarios,
];
