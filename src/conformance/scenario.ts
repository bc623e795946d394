/**
 * Conformance scenarios as data: steps that name a nexus (by index) and a typed command, with expectations and
 * per-profile overrides where a device departs from SPC-4 (scsi-pr.md §14). Transport-agnostic: the runner turns
 * commands into CDBs with src/scsi and sends them through whatever nexus functions it is given.
 */
import type { ProfileName } from '../emulator/index.js';

/** A TransportID a command names: another nexus's initiator port (discovered), a literal, or one of a foreign protocol. */
export type TransportRef =
  | { nexus: number }
  | { transportId: string }
  /** A well-formed TransportID of a protocol the fabric does not use (no target can resolve it). */
  | { foreign: true };

/** A typed command of one step. Keys are bigints; `type`/`scope` are SPC codes. */
export type ScenarioCommand =
  | {
      kind: 'register';
      /** RESERVATION KEY. @default 0n */
      key?: bigint;
      sark: bigint;
      /** REGISTER AND IGNORE EXISTING KEY instead of REGISTER. */
      ignore?: boolean;
      aptpl?: boolean;
      allTgPt?: boolean;
      specIPt?: TransportRef[];
      /** Sends this PARAMETER LIST LENGTH (the list is cut or zero-padded to it). */
      parameterListLength?: number;
    }
  | { kind: 'reserve'; key: bigint; type: number; scope?: number }
  | { kind: 'release'; key: bigint; type: number; scope?: number }
  | { kind: 'clear'; key: bigint }
  | { kind: 'preempt'; key: bigint; sark: bigint; type: number; scope?: number; abort?: boolean }
  | {
      kind: 'move';
      key: bigint;
      sark: bigint;
      destination: TransportRef;
      relativeTargetPortOf: number;
      unreg?: boolean;
    }
  | { kind: 'read-keys'; allocationLength?: number }
  | { kind: 'read-reservation'; allocationLength?: number }
  | { kind: 'report-capabilities'; allocationLength?: number }
  | { kind: 'read-full-status'; allocationLength?: number }
  | { kind: 'prin'; serviceAction: number; allocationLength?: number }
  /** The profile's read-class medium command (READ(10), tape READ(6), READ ELEMENT STATUS). */
  | { kind: 'medium-read' }
  /** The profile's write-class medium command (WRITE(10), tape WRITE(6), MOVE MEDIUM). */
  | { kind: 'medium-write' }
  | { kind: 'test-unit-ready' }
  | { kind: 'inquiry'; page?: number }
  | { kind: 'request-sense' }
  | { kind: 'report-luns' }
  | { kind: 'reserve6' }
  | { kind: 'release6' }
  | { kind: 'raw'; cdb: string; dataOut?: string; dataInLength: number }
  /** Emulator-only controls: a real device run skips scenarios that use them. */
  | { kind: 'power-cycle' }
  | { kind: 'reset' }
  | { kind: 'nexus-loss' };

/** What a step's answer must show. Every present field is checked. */
export interface Expectation {
  /** `any`: whatever the device answers (random sequences compare devices, they expect nothing). @default 'good' */
  status?: 'good' | 'check-condition' | 'reservation-conflict' | 'any';
  /** Sense key / ASC / ASCQ (implies CHECK CONDITION). */
  sense?: { key: number; asc: number; ascq: number };
  /** READ KEYS: the registered keys (compared as a sorted multiset). */
  keys?: bigint[];
  /** PRIN header PRGENERATION, absolute. */
  generation?: number;
  /** PRIN header PRGENERATION relative to the one a labelled step read. */
  generationDelta?: { from: string; delta: number };
  /** READ RESERVATION: null = none held. */
  reservation?: { key: bigint; type: number } | null;
  /** READ FULL STATUS checks. */
  fullStatus?: {
    count?: number;
    allTgPt?: boolean[];
    holderKeys?: bigint[];
    /** The descriptors' RELATIVE TARGET PORT IDENTIFIERs are those of these nexuses (compared as a sorted list). */
    portsOfNexuses?: number[];
  };
  /** PRIN header ADDITIONAL LENGTH. */
  additionalLength?: number;
  /** Data-in bytes transferred. */
  dataInLength?: number;
  /** Exact data-in hex. */
  dataInHex?: string;
  /** Exact data-in bytes from `offset` on (as many as `hex` has), e.g. past a PRIN header's PRgeneration. */
  dataInAt?: { offset: number; hex: string };
  /** REPORT CAPABILITIES checks; `matchesProfile` compares SIP_C/ATP_C/PTPL_C/types with profileCapabilities. */
  capabilities?: { ptplA?: boolean; matchesProfile?: boolean };
}

/** One step. */
export interface ScenarioStep {
  /** Nexus index. @default 0 */
  nexus?: number;
  command: ScenarioCommand;
  expect?: Expectation;
  /** Per-profile replacement of expectation fields (merged over `expect`). */
  overrides?: Partial<Record<ProfileName, Expectation>>;
  /** Names this step's PRgeneration for later generationDelta checks. */
  label?: string;
}

/** What a scenario needs from the device; unmet needs skip it. */
export interface Requirements {
  prout?: number[];
  prin?: number[];
  types?: number[];
  /** Types the device must NOT support (for "unsupported type" checks). */
  typesUnsupported?: number[];
  specIPt?: boolean;
  allTgPt?: boolean;
  aptpl?: boolean;
  /** Minimum number of nexuses. @default 2 */
  nexuses?: number;
  /** PERIPHERAL DEVICE TYPEs the scenario's commands exist for (e.g. [0] for READ CAPACITY). */
  deviceTypes?: number[];
}

/**
 * Tags for real-device runs: `emulator-only` needs controls a device lacks; `lio-bug-preempt-abort-hang`
 * (a successful PREEMPT AND ABORT never completes through tcm_loop) and `lio-bug-spec-i-pt-ref-leak` (a rejected
 * SPEC_I_PT leaks a reference) must run last or be skipped (testbed README, "Known problems of LIO").
 */
export type ScenarioTag =
  'emulator-only' | 'lio-bug-preempt-abort-hang' | 'lio-bug-spec-i-pt-ref-leak';

/** One conformance scenario. */
export interface Scenario {
  /** Stable id, e.g. 'register.unregistered-nexus'. */
  id: string;
  /** The scsi-pr.md §14 checklist item it covers. */
  title: string;
  requires?: Requirements;
  tags?: ScenarioTag[];
  /** Why a profile departs from SPC-4 here (profile → reason); also names which rule a test follows. */
  departures?: Partial<Record<ProfileName, string>>;
  /** Emulator LU options the scenario needs (e.g. a small registration table). */
  emulator?: { maxRegistrations?: number };
  steps: ScenarioStep[];
}
