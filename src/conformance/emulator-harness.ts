/**
 * Runs conformance scenarios against the emulator: one fresh LU per scenario, reachable through N nexuses laid out
 * like the LIO tcm_loop test bed (nexus i = its own SAS initiator port through its own target port i + 1, and each
 * target port knows only its own nexus's initiator, as tcm_loop's one ACL per TPG).
 */
import {
  createEmulator,
  type EmulatedLogicalUnit,
  type Initiator,
  type ProfileName,
  type TranscriptRecorder,
} from '../emulator/index.js';
import { runScenario, type RunOptions, type ScenarioResult } from './runner.js';
import type { Scenario } from './scenario.js';

/** An emulated LU and the runner options that drive it. */
export interface EmulatorHarness {
  lu: EmulatedLogicalUnit;
  initiators: Initiator[];
  options: RunOptions;
}

/** Builds a fresh LU of `profile` with `nexusCount` nexuses and the emulator-only controls wired in. */
export function createEmulatorHarness(
  profile: ProfileName,
  nexusCount = 3,
  lu: { maxRegistrations?: number; recorder?: TranscriptRecorder } = {},
): EmulatorHarness {
  const initiators: Initiator[] = Array.from({ length: nexusCount }, (_, i) => ({
    transportId: { protocol: 'sas', sasAddress: 0x50014050000000a1n + BigInt(i) },
    relativeTargetPort: i + 1,
  }));
  const unit = createEmulator().addLogicalUnit({
    id: `conformance-${profile}`,
    profile,
    serial: 'CONFORMANCE0001',
    targetPorts: initiators.map((i) => i.relativeTargetPort),
    acl: Object.fromEntries(initiators.map((i) => [i.relativeTargetPort, [i.transportId]])),
    ...(lu.maxRegistrations !== undefined ? { maxRegistrations: lu.maxRegistrations } : {}),
  });
  const options: RunOptions = {
    profile,
    nexuses: initiators.map(
      (initiator) => (request) => Promise.resolve(unit.execute(initiator, request)),
    ),
    control: {
      powerCycle: () => unit.powerCycle(),
      reset: () => unit.reset(),
      nexusLoss: (n) => unit.nexusLoss(initiators[n] as Initiator),
    },
    ...(lu.recorder ? { recorder: lu.recorder } : {}),
  };
  return { lu: unit, initiators, options };
}

/** Runs one scenario on a fresh emulated LU of `profile`. */
export function runScenarioOnEmulator(
  scenario: Scenario,
  profile: ProfileName,
  options: { nexusCount?: number; recorder?: TranscriptRecorder } = {},
): Promise<ScenarioResult> {
  const harness = createEmulatorHarness(profile, options.nexusCount ?? 3, {
    ...(scenario.emulator?.maxRegistrations !== undefined
      ? { maxRegistrations: scenario.emulator.maxRegistrations }
      : {}),
    ...(options.recorder ? { recorder: options.recorder } : {}),
  });
  return runScenario(scenario, harness.options);
}
