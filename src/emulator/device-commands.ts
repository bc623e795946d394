/**
 * The non-PR commands an emulated LU answers: INQUIRY (standard, VPD 00h/80h/83h), REPORT LUNS, and the ordinary
 * medium commands of its profile's table: a sparse block store for disks, the element model for changers
 * (element-model.ts); tape commands succeed without moving anything, because only their reservation class matters.
 * @internal
 */
import {
  decodeInquiryCdb,
  decodeReportLunsCdb,
  encodeDeviceIdentification,
  encodeReportLunsData,
  encodeStandardInquiry,
  encodeSupportedVpdPages,
  encodeUnitSerialNumber,
  type Designator,
  type ScsiRequest,
} from '../scsi/index.js';
import { check, good, invalidCdbField, type Answer } from './answers.js';
import type { LuContext } from './context.js';
import type { Initiator } from './pr-state.js';
import type { LogicalUnitSpec } from './logical-unit.js';
import { lioStandardInquiry, lioVpdPage, protocolIdOf, type LioIdentity } from './lio-identity.js';
import { executeChangerCommand, type ElementModel } from './element-model.js';

/** Block size and default capacity of the disk profiles' sparse store (16 MiB is plenty for conflict tests). */
const BLOCK_SIZE = 512;
const BLOCK_COUNT = 32768;
/** SERVICE ACTION IN(16) service action READ CAPACITY(16). */
const READ_CAPACITY_16 = 0x10;
/** Target port group every target port belongs to (VPD 83h designator type 5). */
const TARGET_PORT_GROUP = 1;

/** What device-command handlers need beyond LuContext. @internal */
export interface DeviceContext extends LuContext {
  readonly spec: LogicalUnitSpec;
  readonly blocks: Map<number, Uint8Array>;
  /** Medium changers: slots, drives and cartridges. */
  readonly elements: ElementModel | undefined;
}

/** FNV-1a, to derive a stable NAA from an LU id when the spec gives none. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The LU's NAA designator: the spec's, else NAA 5 (IEEE registered) with a made-up OUI and a hash of the id. */
export function naaOf(spec: LogicalUnitSpec): bigint {
  return spec.naa ?? (0x5n << 60n) | (0x0014c3n << 36n) | BigInt(fnv1a(spec.id));
}

function u16(value: number): Uint8Array {
  return Uint8Array.of(0, 0, (value >> 8) & 0xff, value & 0xff);
}

function u32(value: number): Uint8Array {
  return Uint8Array.of(
    (value >>> 24) & 0xff,
    (value >>> 16) & 0xff,
    (value >>> 8) & 0xff,
    value & 0xff,
  );
}

function big8(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  for (let i = 7, v = value; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

function ascii(text: string, width?: number): Uint8Array {
  const s = width === undefined ? text : text.slice(0, width).padEnd(width, ' ');
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0x7f);
}

/** INQUIRY: standard data, or VPD 00h / 80h / 83h (target-port designators describe the caller's nexus). @internal */
export function executeInquiry(lu: DeviceContext, initiator: Initiator, cdb: Uint8Array): Answer {
  const { evpd, pageCode, allocationLength } = decodeInquiryCdb(cdb);
  const pdt = lu.knobs.capabilities.peripheralDeviceType;
  // Over-long configured names are cut to the field width, as a device's firmware strings always fit.
  const vendor = (lu.spec.vendor ?? lu.knobs.vendor).slice(0, 8);
  const product = (lu.spec.product ?? lu.knobs.product).slice(0, 16);
  const cut = (data: Uint8Array): Answer =>
    good(data.subarray(0, Math.min(data.length, allocationLength)));
  if (lu.knobs.inquiryLayout === 'lio') {
    if (!evpd && pageCode !== 0) return invalidCdbField(2);
    const id = lioIdentityOf(lu, initiator);
    const protocolId = protocolIdOf(initiator.transportId);
    if (!evpd) return cut(lioStandardInquiry(id, protocolId));
    const page = lioVpdPage(id, pageCode, {
      protocolId,
      relativeTargetPort: initiator.relativeTargetPort,
    });
    return page ? cut(page) : invalidCdbField(2);
  }
  if (!evpd) {
    if (pageCode !== 0) return invalidCdbField(2);
    return cut(
      encodeStandardInquiry({
        peripheralQualifier: 0,
        peripheralDeviceType: pdt,
        rmb: lu.knobs.removable,
        version: lu.knobs.inquiryVersion,
        responseDataFormat: 2,
        tpgs: 0,
        mchngr: false,
        multip: lu.targetPorts.length > 1,
        vendor,
        product,
        revision: (lu.spec.revision ?? lu.knobs.revision).slice(0, 4),
      }),
    );
  }
  switch (pageCode) {
    case 0x00:
      return cut(encodeSupportedVpdPages(pdt, [0x00, 0x80, 0x83]));
    case 0x80:
      return cut(encodeUnitSerialNumber(pdt, lu.spec.serial));
    case 0x83: {
      const protocolId = protocolIdOf(initiator.transportId);
      const designators: Designator[] = [
        { codeSet: 1, piv: false, association: 0, designatorType: 3, value: big8(naaOf(lu.spec)) },
        {
          codeSet: 2,
          piv: false,
          association: 0,
          designatorType: 1,
          value: ascii(`${vendor.padEnd(8, ' ')}${product.padEnd(16, ' ')}${lu.spec.serial}`),
        },
        {
          codeSet: 1,
          piv: true,
          association: 1,
          designatorType: 4,
          protocolId,
          value: u16(initiator.relativeTargetPort),
        },
        {
          codeSet: 1,
          piv: true,
          association: 1,
          designatorType: 5,
          protocolId,
          value: u16(TARGET_PORT_GROUP),
        },
      ];
      return cut(encodeDeviceIdentification(pdt, designators));
    }
    default:
      return invalidCdbField(2);
  }
}

/** Default SCSI target name of an LU (VPD 83h association 2): NAA 5 with LIO's OUI and a hash of the target. */
function defaultTargetName(spec: LogicalUnitSpec): string {
  return `naa.5001405${fnv1a(spec.target ?? 'target0')
    .toString(16)
    .padStart(9, '0')}`;
}

/** What the LIO INQUIRY layout needs, from the LU spec and the caller's nexus. */
function lioIdentityOf(lu: DeviceContext, initiator: Initiator): LioIdentity {
  const spec = lu.spec;
  const targetName = spec.targetName ?? defaultTargetName(spec);
  const rtp = initiator.relativeTargetPort;
  return {
    peripheralDeviceType: lu.knobs.capabilities.peripheralDeviceType,
    removable: lu.knobs.removable,
    version: lu.knobs.inquiryVersion,
    vendor: spec.vendor ?? lu.knobs.vendor,
    product: spec.product ?? lu.knobs.product,
    revision: spec.revision ?? lu.knobs.revision,
    serial: spec.serial,
    naa: spec.naa,
    multiPort: lu.targetPorts.length > 1,
    targetName,
    // LIO names a target port "<target WWN>,t,0x<TPG tag>"; without a spec entry the tag is the port number.
    targetPortName:
      spec.targetPortNames?.[rtp] ?? `${targetName},t,0x${rtp.toString(16).padStart(4, '0')}`,
  };
}

/** REPORT LUNS: the LUs of this LU's target. @internal */
export function executeReportLuns(cdb: Uint8Array, luns: number[]): Answer {
  const { selectReport, allocationLength } = decodeReportLunsCdb(cdb);
  if (selectReport > 2) return invalidCdbField(2);
  const data = encodeReportLunsData(luns);
  return good(data.subarray(0, Math.min(data.length, allocationLength)));
}

function blockCountOf(lu: DeviceContext): number {
  return lu.spec.blockCount ?? BLOCK_COUNT;
}

function readUint(cdb: Uint8Array, offset: number, length: number): number {
  let value = 0;
  for (let i = 0; i < length; i++) value = value * 256 + (cdb[offset + i] ?? 0);
  return value;
}

/** Ordinary commands the profile lists; access was already checked. @internal */
export function executeOrdinary(lu: DeviceContext, opcode: number, request: ScsiRequest): Answer {
  const cdb = request.cdb;
  const pdt = lu.knobs.capabilities.peripheralDeviceType;
  const changer = lu.elements && executeChangerCommand(lu.elements, opcode, cdb);
  if (changer !== undefined) return changer;
  switch (opcode) {
    case 0x00: // TEST UNIT READY: medium always present
      return good();
    case 0x1a: // MODE SENSE(6): header only (no pages modelled)
      return good(Uint8Array.of(3, 0, 0, 0).subarray(0, Math.min(4, cdb[4] ?? 0)));
    case 0x5a: // MODE SENSE(10)
      return good(
        Uint8Array.of(0, 6, 0, 0, 0, 0, 0, 0).subarray(0, Math.min(8, readUint(cdb, 7, 2))),
      );
    case 0x4d: // LOG SENSE: the supported-pages page, listing only itself
      return good(Uint8Array.of(0, 0, 0, 1, 0).subarray(0, Math.min(5, readUint(cdb, 7, 2))));
    case 0x25: // READ CAPACITY(10)
      return good(
        Uint8Array.of(...u32(Math.min(blockCountOf(lu) - 1, 0xffffffff)), ...u32(BLOCK_SIZE)),
      );
    case 0x9e: {
      // READ CAPACITY(16): last LBA, block length, then zeros (no protection, one logical block per physical
      // block, no thin provisioning: what LIO's fileio backstore on a plain file answers).
      if (((cdb[1] ?? 0) & 0x1f) !== READ_CAPACITY_16) return invalidCdbField(1, 4);
      const data = new Uint8Array(32);
      data.set(big8(BigInt(blockCountOf(lu) - 1)), 0);
      data.set(u32(BLOCK_SIZE), 8);
      return good(data.subarray(0, Math.min(32, readUint(cdb, 10, 4))));
    }
    case 0x28:
    case 0x2a:
    case 0x88:
    case 0x8a:
      if (pdt === 0) return blockIo(lu, opcode, request);
      return good();
    case 0x08: {
      // Tape READ(6): FIXED bit set → blocks of 512, else a variable block of TRANSFER LENGTH bytes.
      const length = readUint(cdb, 2, 3) * (((cdb[1] ?? 0) & 0x01) !== 0 ? BLOCK_SIZE : 1);
      return good(new Uint8Array(Math.min(length, request.dataInLength)));
    }
    case 0x34: // READ POSITION short form: BOP set, block 0
      return good(Uint8Array.of(0x80, ...new Uint8Array(19)));
    case 0x05: // READ BLOCK LIMITS: max 8 MiB, min 1
      return good(Uint8Array.of(0, 0x80, 0, 0, 0, 1));
    default:
      return good();
  }
}

/** READ/WRITE(10/16) on the sparse block store; LBA range checked (5/21/00). */
function blockIo(lu: DeviceContext, opcode: number, request: ScsiRequest): Answer {
  const cdb = request.cdb;
  const sixteen = opcode === 0x88 || opcode === 0x8a;
  const lba = sixteen ? readUint(cdb, 2, 8) : readUint(cdb, 2, 4);
  const count = sixteen ? readUint(cdb, 10, 4) : readUint(cdb, 7, 2);
  if (lba + count > blockCountOf(lu)) return check(0x05, 0x21, 0x00);
  if (opcode === 0x28 || opcode === 0x88) {
    const data = new Uint8Array(count * BLOCK_SIZE);
    for (let i = 0; i < count; i++) {
      const block = lu.blocks.get(lba + i);
      if (block) data.set(block, i * BLOCK_SIZE);
    }
    return good(data);
  }
  const out = request.dataOut ?? new Uint8Array(0);
  for (let i = 0; i < count; i++) {
    const block = new Uint8Array(BLOCK_SIZE);
    block.set(out.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE));
    lu.blocks.set(lba + i, block);
  }
  return good();
}
