import type { Command } from '../gen/prfleet/v1/agent.js';
import type { PrinAction, ProutAction } from '../gen/prfleet/v1/scsi.js';
import { CapabilitySource, DeviceCapabilities } from '../gen/prfleet/v1/scsi.js';
import { prTypeWords } from '../scsi/index.js';
import {
  prinActionWords,
  proutActionWords,
  prinServiceActionOf,
  proutServiceActionOf,
} from './command.js';

/**
 * What a device profile supports, in SPC codes. Structurally the emulator's `ProfileCapabilities` (src/common
 * may not import src/emulator, style.md §2), so an emulator value is accepted as it is.
 */
export interface PrCapabilities {
  /** PROUT service action codes (SPC: REGISTER 0 … REGISTER AND MOVE 7). */
  readonly proutServiceActions: readonly number[];
  /** PRIN service action codes (SPC: READ KEYS 0 … READ FULL STATUS 3). */
  readonly prinServiceActions: readonly number[];
  /** Reservation TYPE codes. */
  readonly types: readonly number[];
  /** SPEC_I_PT supported. */
  readonly specIPt: boolean;
  /** ALL_TG_PT supported. */
  readonly allTgPt: boolean;
  /** APTPL supported. */
  readonly aptpl: boolean;
}

/** Profile name reported for devices no profile matches; such devices are never refused up front. */
export const UNKNOWN_PROFILE = 'unknown';

/** SPC capabilities of a named profile → proto DeviceCapabilities (proto action numbers are SPC + 1). */
export function capabilitiesToProto(profile: string, caps: PrCapabilities): DeviceCapabilities {
  return DeviceCapabilities.fromPartial({
    profile,
    source: CapabilitySource.CAPABILITY_SOURCE_PROFILE,
    proutActions: caps.proutServiceActions
      .filter((sa) => sa <= 7)
      .map((sa) => (sa + 1) as ProutAction),
    prinActions: caps.prinServiceActions
      .filter((sa) => sa <= 3)
      .map((sa) => (sa + 1) as PrinAction),
    types: [...caps.types],
    specIPt: caps.specIPt,
    allTgPt: caps.allTgPt,
    aptpl: caps.aptpl,
  });
}

/** Capabilities of a device no profile matches: profile "unknown", nothing listed, nothing refused. */
export function unknownCapabilities(): DeviceCapabilities {
  return DeviceCapabilities.fromPartial({ profile: UNKNOWN_PROFILE });
}

/** What PRIN REPORT CAPABILITIES said (scsi-pr.md §8.5), for a device no profile matched. */
export interface ReportedCapabilities {
  readonly crh: boolean;
  readonly sipC: boolean;
  readonly atpC: boolean;
  readonly ptplC: boolean;
  readonly tmv: boolean;
  readonly allowCommands: number;
  readonly supportedTypes: readonly number[];
}

/**
 * Capabilities probed with REPORT CAPABILITIES: profile "unknown", source PROBED; the type mask (when TMV is set)
 * and SIP_C/ATP_C/PTPL_C are what checkSupported refuses by; service actions are left to the device.
 */
export function probedCapabilities(reported: ReportedCapabilities): DeviceCapabilities {
  return DeviceCapabilities.fromPartial({
    profile: UNKNOWN_PROFILE,
    source: CapabilitySource.CAPABILITY_SOURCE_PROBED,
    types: reported.tmv ? [...reported.supportedTypes] : [],
    specIPt: reported.sipC,
    allTgPt: reported.atpC,
    aptpl: reported.ptplC,
    crh: reported.crh,
    allowCommands: reported.allowCommands,
  });
}

/** Where capabilities came from, in words (`prfleet devices`). */
export function capabilitySourceWords(caps: DeviceCapabilities | undefined): string {
  switch (caps?.source) {
    case CapabilitySource.CAPABILITY_SOURCE_PROFILE:
      return 'matched by INQUIRY';
    case CapabilitySource.CAPABILITY_SOURCE_PROBED:
      return 'probed (REPORT CAPABILITIES)';
    default:
      return 'not known';
  }
}

/** Proto DeviceCapabilities → SPC codes (inverse of capabilitiesToProto; unknown enum numbers are dropped). */
export function capabilitiesFromProto(caps: DeviceCapabilities): PrCapabilities {
  return {
    proutServiceActions: caps.proutActions
      .map((a) => proutServiceActionOf(a))
      .filter((sa): sa is number => sa !== undefined),
    prinServiceActions: caps.prinActions
      .map((a) => prinServiceActionOf(a))
      .filter((sa): sa is number => sa !== undefined),
    types: [...caps.types],
    specIPt: caps.specIPt,
    allTgPt: caps.allTgPt,
    aptpl: caps.aptpl,
  };
}

/** Known profiles of medium changers (peripheral device type 08h): the ones READ ELEMENT STATUS is sent to. */
const CHANGER_PROFILES: ReadonlySet<string> = new Set(['superloader-changer']);

/**
 * Whether a device with `caps` supports `command`: undefined when it does (or when the profile is unknown, so
 * the device decides), else a human reason such as "superloader-changer does not support PROUT REGISTER AND MOVE".
 * The server answers FAILED_PRECONDITION with this reason and sends nothing.
 */
export function checkSupported(
  caps: DeviceCapabilities | undefined,
  command: Command,
): string | undefined {
  if (caps === undefined) return undefined;
  // A probed device told its type mask and SIP_C/ATP_C/PTPL_C, not its service actions.
  const probed = caps.source === CapabilitySource.CAPABILITY_SOURCE_PROBED;
  if (!probed && (caps.profile === '' || caps.profile === UNKNOWN_PROFILE)) return undefined;
  const device = probed ? 'the device (REPORT CAPABILITIES)' : caps.profile;
  const kind = command.kind;
  switch (kind?.$case) {
    case 'prin':
      if (!probed && !caps.prinActions.includes(kind.value.action)) {
        return `${device} does not support PRIN ${prinActionWords(kind.value.action)}`;
      }
      return undefined;
    case 'prout': {
      const p = kind.value;
      if (!probed && !caps.proutActions.includes(p.action)) {
        return `${device} does not support PROUT ${proutActionWords(p.action)}`;
      }
      const typesKnown = !probed || caps.types.length > 0; // a probed device without TMV gave no type mask
      if (p.type !== 0 && typesKnown && !caps.types.includes(p.type)) {
        return `${device} does not support reservation type ${prTypeWords(p.type)}`;
      }
      if (p.specIPtTransportIds.length > 0 && !caps.specIPt)
        return `${device} does not support SPEC_I_PT`;
      if (p.allTgPt && !caps.allTgPt) return `${device} does not support ALL_TG_PT`;
      if (p.aptpl && !caps.aptpl) return `${device} does not support APTPL`;
      return undefined;
    }
    case 'readElementStatus':
      // A probed device (no known profile, e.g. the LIO VM's TCM-User changer) answers for itself; REPORT
      // CAPABILITIES says nothing about the device type, and READ ELEMENT STATUS is read-only.
      return probed || CHANGER_PROFILES.has(device)
        ? undefined
        : `${device} is not a medium changer (READ ELEMENT STATUS is for changers)`;
    case 'inquiry':
    case 'testUnitReady':
    case 'requestSense':
    case 'reportLuns':
    case 'luReset':
    case undefined:
      return undefined;
  }
}
