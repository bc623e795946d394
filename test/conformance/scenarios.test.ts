import { describe, expect, it } from 'vitest';
import { PROFILE_NAMES } from '../../src/emulator/index.js';
import {
  runScenarioOnEmulator,
  SCENARIOS,
  scenarioFollows,
  skipReason,
  createEmulatorHarness,
} from '../../src/conformance/index.js';

describe.each(PROFILE_NAMES)('conformance scenarios on the %s emulator profile', (profile) => {
  const harness = createEmulatorHarness(profile);
  for (const scenario of SCENARIOS) {
    const skip = skipReason(scenario, harness.options);
    const follows = scenarioFollows(scenario, profile);
    const name = `${scenario.id} follows ${follows === 'spc4' ? 'SPC-4' : follows}${
      scenario.departures?.[profile] && follows !== 'spc4'
        ? ` (${scenario.departures[profile]})`
        : ''
    }`;
    it.skipIf(skip !== undefined)(name, async () => {
      const result = await runScenarioOnEmulator(scenario, profile);
      expect(result.failure ?? 'passed').toBe('passed');
      expect(result.passed).toBe(true);
    });
  }
});
