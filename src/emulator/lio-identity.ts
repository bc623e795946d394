/**
 * Standard INQUIRY and VPD pages in the layout of Linux target_core_spc.c (inquiry layout `lio`): what LIO
 * answers for an emulated (fileio/rd_mcp) LU, checked byte for byte against kernel 6.1 through tcm_loop
 * (test/lio). Only layout lives here; identity (vendor, product, serial, names) comes from the LU spec.
 * @internal
 */
import { encodeDeviceIdentification, type Designator, type TransportId } from '../scsi/index.js';

/** IEEE company id LIO puts in its NAA 6 designators (t10_wwn.company_id default, OUI 00-14-05). */
const LIO_COMPANY_ID = 0x001405;
/** Standard INQUIRY ADDITIONAL LENGTH LIO always reports (96 bytes in all). */
const STANDARD_ADDITIONAL_LENGTH = 91;
/** VPD pages LIO lists in VPD 00h, in its order (evpd_handlers[]). */
const SUPPORTED_PAGES = [0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2, 0xb3];
/** fileio: FD_MAX_BYTES / 512-byte blocks; also the optimal transfer length LIO reports (hw_max_sectors). */
const FILEIO_MAX_SECTORS = 16384;

// Version descriptors (include/scsi/scsi_proto.h).
const SAM5 = 0x00a0;
const SPC4 = 0x0460;
const SBC3 = 0x04c0;

/** Identity the LIO layout needs from the LU. @internal */
export interface LioIdentity {
  readonly peripheralDeviceType: number;
  readonly removable: boolean;
  readonly version: number;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly serial: string;
  /** LU NAA; undefined = derived from the serial as LIO does. */
  readonly naa: bigint | undefined;
  /** More than one target port exports the LU (MULTIP). */
  readonly multiPort: boolean;
  /** SCSI target device name (VPD 83h association 2). */
  readonly targetName: string;
  /** SCSI name of the caller's target port (VPD 83h association 1). */
  readonly targetPortName: string;
}

/** SCSI PROTOCOL IDENTIFIER of the fabric a TransportID belongs to. @internal */
export function protocolIdOf(t: TransportId): number {
  switch (t.protocol) {
    case 'fc':
      return 0x0;
    case 'sas':
      return 0x6;
    case 'iscsi':
      return 0x5;
    case 'raw':
      return (t.bytes[0] ?? 0x0f) & 0x0f;
  }
}

/** spc_find_scsi_transport_vd(): the transport's version descriptor, 0 for others. */
function transportVersionDescriptor(protocolId: number): number {
  const table: Record<number, number> = {
    0x0: 0x0a40,
    0x5: 0x0960,
    0x6: 0x0c60,
    0x3: 0x0980,
    0x4: 0x0940,
  };
  return table[protocolId] ?? 0;
}

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0x7f);
}

function put16(out: Uint8Array, at: number, value: number): void {
  out[at] = (value >> 8) & 0xff;
  out[at + 1] = value & 0xff;
}

function put32(out: Uint8Array, at: number, value: number): void {
  put16(out, at, Math.floor(value / 0x10000));
  put16(out, at + 2, value & 0xffff);
}

function vpd(pdt: number, page: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  out[0] = pdt;
  out[1] = page;
  put16(out, 2, payload.length);
  out.set(payload, 4);
  return out;
}

/** spc_emulate_inquiry_std(): 96 bytes; `protocolId` is the receiving target port's fabric. @internal */
export function lioStandardInquiry(id: LioIdentity, protocolId: number): Uint8Array {
  const out = new Uint8Array(5 + STANDARD_ADDITIONAL_LENGTH);
  out[0] = id.peripheralDeviceType;
  out[1] = id.removable ? 0x80 : 0;
  out[2] = id.version;
  out[3] = 0x02;
  out[4] = STANDARD_ADDITIONAL_LENGTH;
  // SCCS (REPORT TARGET PORT GROUPS), TPGS 3 (default ALUA group: implicit + explicit), 3PC (EXTENDED COPY).
  out[5] = 0x80 | 0x30 | 0x08;
  out[6] = id.multiPort ? 0x10 : 0;
  out[7] = 0x02; // CMDQUE
  out.fill(0x20, 8, 36);
  out.set(ascii(id.vendor.slice(0, 8)), 8);
  out.set(ascii(id.product.slice(0, 16)), 16);
  out.set(ascii(id.revision.slice(0, 4)), 32);
  put16(out, 58, SAM5);
  put16(out, 60, transportVersionDescriptor(protocolId));
  put16(out, 62, SPC4);
  if (id.peripheralDeviceType === 0) put16(out, 64, SBC3);
  return out;
}

/**
 * spc_gen_naa_6h_vendor_specific(): NAA 6, the company id, then the hex digits of the serial (others skipped),
 * 16 bytes.
 */
export function lioNaaFromSerial(serial: string): Uint8Array {
  const out = new Uint8Array(16);
  out[0] = 0x60 | ((LIO_COMPANY_ID >> 20) & 0x0f);
  out[1] = (LIO_COMPANY_ID >> 12) & 0xff;
  out[2] = (LIO_COMPANY_ID >> 4) & 0xff;
  out[3] = (LIO_COMPANY_ID & 0x0f) << 4;
  let at = 3;
  let high = false;
  for (const c of serial) {
    if (at >= 16) break;
    const digit = Number.parseInt(c, 16);
    if (Number.isNaN(digit)) continue;
    if (high) {
      out[at] = digit << 4;
    } else {
      out[at] = (out[at] as number) | digit;
      at++;
    }
    high = !high;
  }
  return out;
}

function naaBytes(id: LioIdentity): Uint8Array {
  if (id.naa === undefined) return lioNaaFromSerial(id.serial);
  const width = id.naa > 0xffff_ffff_ffff_ffffn ? 16 : 8;
  const out = new Uint8Array(width);
  for (let i = width - 1, v = id.naa; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/** A NUL-terminated SCSI name string padded with NULs to a multiple of 4 (at most 256 bytes). */
function scsiName(name: string): Uint8Array {
  const length = Math.min(256, Math.ceil((name.length + 1) / 4) * 4);
  const out = new Uint8Array(length);
  out.set(ascii(name).subarray(0, length - 1));
  return out;
}

/** VPD page `page` in LIO's layout, or undefined when LIO does not implement it (→ 24h/00h). @internal */
export function lioVpdPage(
  id: LioIdentity,
  page: number,
  caller: { protocolId: number; relativeTargetPort: number },
): Uint8Array | undefined {
  const pdt = id.peripheralDeviceType;
  switch (page) {
    case 0x00:
      return vpd(pdt, page, Uint8Array.from(SUPPORTED_PAGES));
    case 0x80:
      // The serial with its NUL terminator counted in the page length.
      return vpd(pdt, page, Uint8Array.of(...ascii(id.serial), 0));
    case 0x83: {
      const { protocolId } = caller;
      const binary = (value: number): Uint8Array =>
        Uint8Array.of(0, 0, (value >> 8) & 0xff, value & 0xff);
      const t10 = `${id.vendor.slice(0, 8).padEnd(8, ' ')}${id.product.trimEnd()}:${id.serial}`;
      const designators: Designator[] = [
        { codeSet: 1, piv: false, association: 0, designatorType: 3, value: naaBytes(id) },
        {
          codeSet: 2,
          piv: false,
          association: 0,
          designatorType: 1,
          value: Uint8Array.of(...ascii(t10), 0),
        },
        {
          codeSet: 1,
          piv: true,
          association: 1,
          designatorType: 4,
          protocolId,
          value: binary(caller.relativeTargetPort),
        },
        // default_tg_pt_gp and default_lu_gp both have id 0.
        { codeSet: 1, piv: true, association: 1, designatorType: 5, protocolId, value: binary(0) },
        { codeSet: 1, piv: false, association: 0, designatorType: 6, value: binary(0) },
        {
          codeSet: 3,
          piv: true,
          association: 1,
          designatorType: 8,
          protocolId,
          value: scsiName(id.targetPortName),
        },
        {
          codeSet: 3,
          piv: true,
          association: 2,
          designatorType: 8,
          protocolId,
          value: scsiName(id.targetName),
        },
      ];
      return encodeDeviceIdentification(pdt, designators);
    }
    case 0x86: {
      // Extended INQUIRY Data: HEADSUP, ORDSUP, SIMPSUP; no protection, no write cache (V_SUP 0) on fileio.
      const payload = new Uint8Array(0x3c);
      payload[1] = 0x07;
      return vpd(pdt, page, payload);
    }
    case 0xb0: {
      // Block Limits without thin provisioning: WSNZ, COMPARE AND WRITE of 1 block, granularity 1, fileio limits.
      const payload = new Uint8Array(0x10);
      payload[0] = 0x01;
      payload[1] = 0x01;
      put16(payload, 2, 1);
      put32(payload, 4, FILEIO_MAX_SECTORS);
      put32(payload, 8, FILEIO_MAX_SECTORS);
      return vpd(pdt, page, payload);
    }
    case 0xb1:
      // Block Device Characteristics: rotation rate not reported (is_nonrot 0).
      return vpd(pdt, page, new Uint8Array(0x3c));
    case 0xb2:
      // Logical Block Provisioning: neither UNMAP nor WRITE SAME unmapping emulated.
      return vpd(pdt, page, new Uint8Array(0x04));
    case 0xb3:
      // Referrals: segment size and multiplier 0.
      return vpd(pdt, page, new Uint8Array(0x0c));
    default:
      return undefined;
  }
}
