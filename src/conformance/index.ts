/** Conformance scenarios (scsi-pr.md §14 as data) and the transport-agnostic runner. See docs/emulator.md. */
export * from './scenario.js';
export { SCENARIOS } from './scenarios.js';
export {
  describeCommand,
  expectationFor,
  runScenario,
  scenarioFollows,
  skipReason,
  type NexusFunction,
  type RunOptions,
  type ScenarioResult,
  type StepResult,
} from './runner.js';
export {
  createEmulatorHarness,
  runScenarioOnEmulator,
  type EmulatorHarness,
} from './emulator-harness.js';
