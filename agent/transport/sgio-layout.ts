/**
 * The `sg_io_hdr_t` of <scsi/sg.h> as data: its constants, its layout on x86_64, how a request fills it and how a
 * completed one becomes a response. No FFI here (sgio-binding.ts does the native side), so all of it can be
 * checked without koffi or a device. Layout and constants: scsi-pr.md §10 (measured with offsetof() on x86_64).
 */
import type { ScsiRequest, ScsiResponse } from '../../src/scsi/exchange.js';

/** `SG_IO` ioctl request number (<scsi/sg.h>). */
export const SG_IO = 0x2285;
/** `SG_SCSI_RESET` ioctl request number (<scsi/sg.h>); its int argument says which reset. */
export const SG_SCSI_RESET = 0x2284;
/** SG_SCSI_RESET argument: a logical unit (device) reset. */
export const SG_SCSI_RESET_DEVICE = 1;
/** `sg_io_hdr.interface_id` must be 'S'. */
const SG_INTERFACE_ID = 0x53;
/** Data transfer directions (<scsi/sg.h>); TO_FROM_DEV (−4) returns EINVAL on /dev/sg (testbed README). */
export const SG_DXFER_NONE = -1;
export const SG_DXFER_TO_DEV = -2;
export const SG_DXFER_FROM_DEV = -3;
/** Sense buffer size; sg3_utils uses 64 (scsi-pr.md §10.1), descriptor sense can exceed 18 bytes. */
export const SENSE_BUFFER_LENGTH = 64;

/** `sg_io_hdr_t` field by field, as koffi declares it (C types, in declaration order). */
export const SG_IO_HDR_FIELDS = {
  interface_id: 'int',
  dxfer_direction: 'int',
  cmd_len: 'uchar',
  mx_sb_len: 'uchar',
  iovec_count: 'ushort',
  dxfer_len: 'uint',
  dxferp: 'void *',
  cmdp: 'uchar *',
  sbp: 'void *',
  timeout: 'uint',
  flags: 'uint',
  pack_id: 'int',
  usr_ptr: 'void *',
  status: 'uchar',
  masked_status: 'uchar',
  msg_status: 'uchar',
  sb_len_wr: 'uchar',
  host_status: 'ushort',
  driver_status: 'ushort',
  resid: 'int',
  duration: 'uint',
  info: 'uint',
} as const;

/** Expected `sg_io_hdr_t` layout on x86_64 Linux: 88 bytes, 22 fields (scsi-pr.md §10.1). */
export const SG_IO_HDR_LAYOUT = {
  size: 88,
  offsets: {
    interface_id: 0,
    dxfer_direction: 4,
    cmd_len: 8,
    mx_sb_len: 9,
    iovec_count: 10,
    dxfer_len: 12,
    dxferp: 16,
    cmdp: 24,
    sbp: 32,
    timeout: 40,
    flags: 44,
    pack_id: 48,
    usr_ptr: 56,
    status: 64,
    masked_status: 65,
    msg_status: 66,
    sb_len_wr: 67,
    host_status: 68,
    driver_status: 70,
    resid: 72,
    duration: 76,
    info: 80,
  },
} as const;

/** A struct layout as an FFI library computed it: total size and the offset of each field. */
export interface StructLayout {
  readonly size: number;
  readonly offsets: Readonly<Record<string, number | undefined>>;
}

/**
 * Compares a computed `sg_io_hdr_t` layout with the C one; returns one line per difference (empty = match).
 * The transport refuses to send anything when this is not empty: a wrong offset would hand the kernel garbage
 * pointers.
 */
export function checkSgIoHdrLayout(
  actual: StructLayout,
  expected: StructLayout = SG_IO_HDR_LAYOUT,
): string[] {
  const problems: string[] = [];
  if (actual.size !== expected.size)
    problems.push(`sizeof = ${actual.size}, expected ${expected.size}`);
  for (const [field, offset] of Object.entries(expected.offsets)) {
    const got = actual.offsets[field];
    if (got !== offset)
      problems.push(`offsetof(${field}) = ${got ?? 'missing'}, expected ${offset}`);
  }
  return problems;
}

/** Which way a request's data moves and how much: the header's dxfer_direction and dxfer_len. */
export interface DataTransfer {
  readonly direction: number;
  readonly length: number;
  /** The data-out bytes (empty unless direction is SG_DXFER_TO_DEV). */
  readonly out: Uint8Array;
}

export function dataTransferOf(request: ScsiRequest): DataTransfer {
  const out = request.dataOut ?? new Uint8Array(0);
  const direction =
    out.length > 0 ? SG_DXFER_TO_DEV : request.dataInLength > 0 ? SG_DXFER_FROM_DEV : SG_DXFER_NONE;
  const length = direction === SG_DXFER_TO_DEV ? out.length : request.dataInLength;
  return { direction, length, out };
}

/** The native buffers a header points at (FFI pointers; `data` is null when nothing moves). */
export interface HdrPointers {
  readonly cdb: unknown;
  readonly sense: unknown;
  readonly data: unknown;
}

/** The `sg_io_hdr_t` to encode for `request`: every field set, outputs zeroed. */
export function sgIoHdrOf(
  request: ScsiRequest,
  transfer: DataTransfer,
  pointers: HdrPointers,
): Record<keyof typeof SG_IO_HDR_FIELDS, unknown> {
  return {
    interface_id: SG_INTERFACE_ID,
    dxfer_direction: transfer.direction,
    cmd_len: request.cdb.length,
    mx_sb_len: SENSE_BUFFER_LENGTH,
    iovec_count: 0,
    dxfer_len: transfer.length,
    dxferp: pointers.data,
    cmdp: pointers.cdb,
    sbp: pointers.sense,
    timeout: Math.ceil(request.timeoutMs),
    flags: 0,
    pack_id: 0,
    usr_ptr: null,
    status: 0,
    masked_status: 0,
    msg_status: 0,
    sb_len_wr: 0,
    host_status: 0,
    driver_status: 0,
    resid: 0,
    duration: 0,
    info: 0,
  };
}

/** The output fields of a completed `sg_io_hdr_t`. */
export interface CompletedHdr {
  readonly status: number;
  readonly sb_len_wr: number;
  readonly host_status: number;
  readonly driver_status: number;
  readonly resid: number;
  readonly duration: number;
}

/**
 * The response a completed header describes. `senseBuffer` is the whole sense buffer, `dataBuffer` the whole
 * data-in buffer (undefined unless data moved from the device); both are copied, so the native memory can go.
 */
export function responseOf(
  hdr: CompletedHdr,
  transfer: DataTransfer,
  senseBuffer: Uint8Array,
  dataBuffer: Uint8Array | undefined,
): ScsiResponse {
  const sense = senseBuffer.slice(0, Math.min(hdr.sb_len_wr, SENSE_BUFFER_LENGTH));
  // resid can exceed dxfer_len or go negative on some HBAs; clamp so dataIn stays within the buffer.
  const resid = Math.max(0, Math.min(hdr.resid, transfer.length));
  const dataIn =
    dataBuffer === undefined ? new Uint8Array(0) : dataBuffer.slice(0, transfer.length - resid);
  return {
    status: hdr.status,
    sense,
    dataIn,
    resid: transfer.direction === SG_DXFER_FROM_DEV ? resid : hdr.resid,
    hostStatus: hdr.host_status,
    driverStatus: hdr.driver_status,
    durationMs: hdr.duration,
  };
}
