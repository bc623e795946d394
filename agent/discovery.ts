import type { Logger } from 'pino';
import {
  capabilitiesToProto,
  probedCapabilities,
  unknownCapabilities,
} from '../src/common/capabilities.js';
import { transportIdToProto } from '../src/common/command.js';
import { profileCapabilities, profileForInquiry } from '../src/scsi/profiles.js';
import {
  Designator as ProtoDesignator,
  Path,
  type DeviceCapabilities,
} from '../src/gen/prfleet/v1/scsi.js';
import {
  classifyResponse,
  decodeDeviceIdentification,
  decodeSense,
  decodeCapabilities,
  decodeStandardInquiry,
  decodeSupportedVpdPages,
  decodeUnitSerialNumber,
  describeSense,
  encodeInquiry,
  encodePrin,
  formatDesignator,
  luIdentity,
  relativeTargetPortOf,
  statusName,
  type Designator,
  type ScsiResponse,
  type TransportId,
} from '../src/scsi/index.js';
import type { ScsiDevice } from './transport/transport.js';

/** A device node to describe, with what the host (not the device) knows about it. */
export interface DiscoveryTarget {
  /** Device node, e.g. "/dev/sg0". */
  readonly path: string;
  /** Initiator port of this path (from the kernel, or the fabric). */
  readonly initiatorPort?: TransportId;
  /** Loader (chassis) the LU belongs to, when the host knows it (the emulated fabric does). */
  readonly loaderId?: string;
}

/** A device that did not answer discovery usably; names the path and the step. */
export class DiscoveryError extends Error {
  override readonly name = 'DiscoveryError';
  constructor(
    message: string,
    /** The device node. */
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Options for {@link discoverPath}. */
export interface DiscoveryOptions {
  /** Timeout of each INQUIRY, ms. @default 10000 */
  readonly timeoutMs?: number;
  /** UNIT ATTENTIONs tolerated per INQUIRY (INQUIRY should not report them, SPC-4 5.14; some devices do). @default 3 */
  readonly unitAttentionRetries?: number;
  /** Logger for unit attentions met during discovery (they are news, so they are logged, not swallowed). */
  readonly log?: Logger;
}

const VPD_SUPPORTED_PAGES = 0x00;
const VPD_UNIT_SERIAL_NUMBER = 0x80;
const VPD_DEVICE_IDENTIFICATION = 0x83;
/** Standard INQUIRY: 36 bytes carry every field we use (scsi-pr.md §11.1); ask for more as sg_inq does. */
const STANDARD_INQUIRY_LENGTH = 96;
const VPD_ALLOCATION_LENGTH = 1024;
/** PRIN REPORT CAPABILITIES and its 8-byte answer (scsi-pr.md §8.5). */
const REPORT_CAPABILITIES = 2;
const REPORT_CAPABILITIES_LENGTH = 8;

async function inquire(
  device: ScsiDevice,
  target: DiscoveryTarget,
  what: string,
  cdb: Uint8Array,
  allocationLength: number,
  options: DiscoveryOptions,
): Promise<Uint8Array> {
  const retries = options.unitAttentionRetries ?? 3;
  for (let attempt = 0; ; attempt++) {
    let response: ScsiResponse;
    try {
      response = await device.execute({
        cdb,
        dataInLength: allocationLength,
        timeoutMs: options.timeoutMs ?? 10_000,
      });
    } catch (e) {
      throw new DiscoveryError(
        `${target.path}: ${what} failed: ${(e as Error).message}`,
        target.path,
        { cause: e },
      );
    }
    const { kind } = classifyResponse(response);
    if (kind === 'good') return response.dataIn;
    if (kind === 'unit-attention' && attempt < retries) {
      options.log?.info(
        { path: target.path, sense: describeSense(decodeSense(response.sense)) },
        'unit attention during discovery',
      );
      continue;
    }
    const sense = response.sense.length > 0 ? `: ${safeDescribe(response.sense)}` : '';
    throw new DiscoveryError(
      `${target.path}: ${what} answered ${statusName(response.status)}${response.hostStatus ? ` (host status 0x${response.hostStatus.toString(16)})` : ''}${sense}`,
      target.path,
    );
  }
}

function safeDescribe(sense: Uint8Array): string {
  try {
    return describeSense(decodeSense(sense));
  } catch {
    return 'undecodable sense';
  }
}

function designatorToProto(d: Designator): ProtoDesignator {
  return ProtoDesignator.fromPartial({
    codeSet: d.codeSet,
    association: d.association,
    designatorType: d.designatorType,
    ...(d.piv && d.protocolId !== undefined ? { protocolId: d.protocolId } : {}),
    value: Buffer.from(d.value),
    display: formatDesignator(d),
  });
}

/**
 * Describes one path by asking the device: standard INQUIRY, then VPD 00h and, when listed, 80h (serial) and 83h
 * (designators) → proto Path with peripheral type, vendor/product/revision, serial, lu_id (`luIdentity`,
 * scsi-pr.md §11.3), designators, relative target port (VPD 83h association 1) and the profile's capabilities.
 * The same code serves emulated and SG_IO paths; grouping paths into LUs is the server's job (by lu_id).
 * Throws DiscoveryError when the standard INQUIRY fails or its data cannot be read.
 */
export async function discoverPath(
  device: ScsiDevice,
  target: DiscoveryTarget,
  options: DiscoveryOptions = {},
): Promise<Path> {
  const standardData = await inquire(
    device,
    target,
    'INQUIRY',
    encodeInquiry({ allocationLength: STANDARD_INQUIRY_LENGTH }),
    STANDARD_INQUIRY_LENGTH,
    options,
  );
  let standard;
  try {
    standard = decodeStandardInquiry(standardData);
  } catch (e) {
    throw new DiscoveryError(`${target.path}: INQUIRY data: ${(e as Error).message}`, target.path, {
      cause: e,
    });
  }

  const vpd = async (page: number): Promise<Uint8Array | undefined> => {
    try {
      return await inquire(
        device,
        target,
        `INQUIRY VPD 0x${page.toString(16)}`,
        encodeInquiry({ evpd: true, pageCode: page, allocationLength: VPD_ALLOCATION_LENGTH }),
        VPD_ALLOCATION_LENGTH,
        options,
      );
    } catch (e) {
      options.log?.warn({ path: target.path, page, err: e }, 'vpd page unreadable');
      return undefined;
    }
  };

  let pages: number[] = [];
  const supported = await vpd(VPD_SUPPORTED_PAGES);
  if (supported) {
    try {
      pages = decodeSupportedVpdPages(supported);
    } catch (e) {
      options.log?.warn({ path: target.path, err: e }, 'vpd 00h undecodable');
    }
  }
  let serial = '';
  if (pages.includes(VPD_UNIT_SERIAL_NUMBER)) {
    const data = await vpd(VPD_UNIT_SERIAL_NUMBER);
    try {
      if (data) serial = decodeUnitSerialNumber(data).trim();
    } catch (e) {
      options.log?.warn({ path: target.path, err: e }, 'vpd 80h undecodable');
    }
  }
  let designators: Designator[] = [];
  if (pages.includes(VPD_DEVICE_IDENTIFICATION)) {
    const data = await vpd(VPD_DEVICE_IDENTIFICATION);
    try {
      if (data) designators = decodeDeviceIdentification(data);
    } catch (e) {
      options.log?.warn({ path: target.path, err: e }, 'vpd 83h undecodable');
    }
  }

  const profile = profileForInquiry(
    standard.vendor,
    standard.product,
    standard.peripheralDeviceType,
  );
  return Path.fromPartial({
    path: target.path,
    peripheralDeviceType: standard.peripheralDeviceType,
    vendor: standard.vendor,
    product: standard.product,
    revision: standard.revision,
    serial,
    luId: luIdentity({ designators, vendor: standard.vendor, product: standard.product, serial }),
    designators: designators.map(designatorToProto),
    ...(target.initiatorPort ? { initiatorPort: transportIdToProto(target.initiatorPort) } : {}),
    relativeTargetPort: relativeTargetPortOf(designators) ?? 0,
    loaderId: target.loaderId ?? '',
    capabilities:
      profile === undefined
        ? await probe(device, target, options)
        : capabilitiesToProto(profile, profileCapabilities(profile)),
    online: true,
  });
}

/**
 * A device no profile matches: asks PRIN REPORT CAPABILITIES (8 bytes) and derives what can be refused up front;
 * a device that does not answer it (24h/00h, no PR) stays "unknown" with nothing refused.
 */
async function probe(
  device: ScsiDevice,
  target: DiscoveryTarget,
  options: DiscoveryOptions,
): Promise<DeviceCapabilities> {
  try {
    const data = await inquire(
      device,
      target,
      'PRIN REPORT CAPABILITIES',
      encodePrin(REPORT_CAPABILITIES, REPORT_CAPABILITIES_LENGTH),
      REPORT_CAPABILITIES_LENGTH,
      options,
    );
    return probedCapabilities(decodeCapabilities(data));
  } catch (e) {
    options.log?.info(
      { path: target.path, err: e },
      'no profile matched and REPORT CAPABILITIES gave nothing',
    );
    return unknownCapabilities();
  }
}

/** A Path for a node that could not be described: only what the host knows, `online` false. */
export function offlinePath(target: DiscoveryTarget): Path {
  return Path.fromPartial({
    path: target.path,
    ...(target.initiatorPort ? { initiatorPort: transportIdToProto(target.initiatorPort) } : {}),
    loaderId: target.loaderId ?? '',
    capabilities: unknownCapabilities(),
    online: false,
  });
}
