/** The in-memory SPC-4 persistent-reservation target: public API (see docs/emulator.md). */
export { createEmulator, type Emulator, type EmulatorOptions } from './emulator.js';
export {
  DEFAULT_TARGET_PORTS,
  type EmulatedLogicalUnit,
  type LogicalUnitSnapshot,
  type LogicalUnitSpec,
} from './logical-unit.js';
export type { Initiator } from './pr-state.js';
export { ELEMENT_BASE, type ElementLayoutSpec } from './element-model.js';
export {
  isProfileName,
  PROFILE_NAMES,
  profileCapabilities,
  profileForInquiry,
  profileKnobs,
  type AccessClass,
  type ErrorFlavour,
  type ProfileCapabilities,
  type ProfileKnobs,
  type ProfileName,
} from '../scsi/profiles.js';
export {
  createTranscriptRecorder,
  formatTranscript,
  parseTranscript,
  replayTranscript,
  transcriptNexusOf,
  TranscriptParseError,
  type ReplayMismatch,
  type ReplayOptions,
  type ReplayResult,
  type Transcript,
  type TranscriptCommand,
  type TranscriptEvent,
  type TranscriptHeader,
  type TranscriptNexus,
  type TranscriptRecorder,
} from './transcript.js';
