/**
 * Real SCSI commands on Linux: SG_IO on /dev/sgN through koffi (FFI, no compiler at install time).
 *
 * The ioctl runs on a libuv worker thread (koffi `.async`), so a slow device never blocks the event loop.
 * koffi is imported lazily on first use: machines without it (laptops, macOS, CI jobs that only use the
 * emulator) load this module fine and only fail when a real device is opened.
 *
 * Layout and constants: scsi-pr.md §10 (measured with offsetof() on x86_64 against <scsi/sg.h>).
 */
import { constants as osConstants } from 'node:os';
import { constants as fsConstants } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import type { ScsiRequest, ScsiResponse } from '../../src/scsi/exchange.js';
import { TransportError, type ScsiDevice, type ScsiTransport } from './transport.js';

/** `SG_IO` ioctl request number (<scsi/sg.h>). */
export const SG_IO = 0x2285;
/** `SG_SCSI_RESET` ioctl request number (<scsi/sg.h>); its int argument says which reset. */
export const SG_SCSI_RESET = 0x2284;
/** SG_SCSI_RESET argument: a logical unit (device) reset. */
export const SG_SCSI_RESET_DEVICE = 1;
/** `sg_io_hdr.interface_id` must be 'S'. */
const SG_INTERFACE_ID = 0x53;
/** Data transfer directions (<scsi/sg.h>); TO_FROM_DEV (−4) returns EINVAL on /dev/sg (testbed README). */
const SG_DXFER_NONE = -1;
const SG_DXFER_TO_DEV = -2;
const SG_DXFER_FROM_DEV = -3;
/** Sense buffer size; sg3_utils uses 64 (scsi-pr.md §10.1), descriptor sense can exceed 18 bytes. */
const SENSE_BUFFER_LENGTH = 64;

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

/**
 * Opcodes the SG_IO transport will pass to the kernel (defence in depth: the agent executor already builds CDBs
 * only from typed, allow-listed commands): TEST UNIT READY, REQUEST SENSE, INQUIRY, PERSISTENT RESERVE IN/OUT,
 * REPORT LUNS, READ ELEMENT STATUS (read-only; MOVE MEDIUM is never sent).
 */
export const SGIO_ALLOWED_OPCODES: ReadonlySet<number> = new Set([
  0x00, 0x03, 0x12, 0x5e, 0x5f, 0xa0, 0xb8,
]);

/** CDB length by group code (SPC-4 §4.2.5.1); undefined for group 3 (variable) and the vendor groups 6/7. */
function cdbLengthOf(opcode: number): number | undefined {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return undefined;
  }
}

/**
 * Checks a request before it can reach the ioctl; returns why it is refused, or undefined when it may be sent.
 * Refused: opcodes outside `allowedOpcodes`, a CDB length that does not match the opcode's group, data in both
 * directions, negative or absurd lengths, a non-positive timeout.
 */
export function refuseRequest(
  request: ScsiRequest,
  allowedOpcodes: ReadonlySet<number> = SGIO_ALLOWED_OPCODES,
): string | undefined {
  if (request.reset !== undefined) {
    if (request.reset !== 'logical-unit' || request.cdb.length !== 0)
      return 'malformed reset request';
    return undefined;
  }
  const opcode = request.cdb[0];
  if (opcode === undefined) return 'empty cdb';
  const hex = `0x${opcode.toString(16).padStart(2, '0')}`;
  if (!allowedOpcodes.has(opcode)) return `opcode ${hex} is not on the sgio allow-list`;
  const expectedLength = cdbLengthOf(opcode);
  if (expectedLength !== undefined && request.cdb.length !== expectedLength) {
    return `cdb for opcode ${hex} is ${request.cdb.length} bytes, expected ${expectedLength}`;
  }
  // Vendor-specific and variable-length groups: whatever fits sg_io_hdr.cmd_len (1 byte; sg caps it at 252).
  if (expectedLength === undefined && (request.cdb.length < 6 || request.cdb.length > 252)) {
    return `cdb for opcode ${hex} is ${request.cdb.length} bytes, expected 6 to 252`;
  }
  const outLength = request.dataOut?.length ?? 0;
  if (outLength > 0 && request.dataInLength > 0) {
    return 'data-out and data-in in one command (SG_DXFER_TO_FROM_DEV) is not supported by /dev/sg';
  }
  if (
    !Number.isInteger(request.dataInLength) ||
    request.dataInLength < 0 ||
    request.dataInLength > MAX_TRANSFER
  ) {
    return `invalid dataInLength ${request.dataInLength}`;
  }
  if (outLength > MAX_TRANSFER) return `data-out of ${outLength} bytes is too large`;
  if (
    !Number.isFinite(request.timeoutMs) ||
    request.timeoutMs <= 0 ||
    request.timeoutMs > MAX_TIMEOUT_MS
  ) {
    return `invalid timeoutMs ${request.timeoutMs}`;
  }
  return undefined;
}

/** Largest transfer accepted: PR data never comes close; 1 MiB bounds a buggy caller's allocation. */
const MAX_TRANSFER = 1 << 20;
/** sg converts timeout with msecs_to_jiffies and caps it; one hour is far beyond any PR command. */
const MAX_TIMEOUT_MS = 3_600_000;

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

function errnoNumber(code: string): number {
  return (osConstants.errno as Record<string, number | undefined>)[code] ?? 0;
}

/**
 * Turns an errno from open/ioctl into a TransportError whose message says what to do about it: EACCES/EPERM
 * explain CAP_SYS_RAWIO and node permissions; ENODEV/ENXIO/ENOENT say the node vanished.
 */
export function transportErrorFromErrno(
  errno: number,
  path: string,
  operation: 'open' | 'ioctl',
  cause?: unknown,
): TransportError {
  const code = errnoName(errno);
  let explanation: string;
  switch (code) {
    case 'EPERM':
      explanation =
        operation === 'ioctl'
          ? 'the kernel refused the command: PERSISTENT RESERVE IN/OUT through SG_IO needs CAP_SYS_RAWIO ' +
            '(run the agent as root or grant it with setcap/AmbientCapabilities=CAP_SYS_RAWIO)'
          : 'operation not permitted: the agent needs read-write access to the node and CAP_SYS_RAWIO';
      break;
    case 'EACCES':
      explanation =
        'permission denied: the agent needs read-write access to the node (its owner/group/mode or a udev rule) ' +
        'and CAP_SYS_RAWIO for PERSISTENT RESERVE IN/OUT';
      break;
    case 'ENODEV':
    case 'ENXIO':
    case 'ENOENT':
      explanation =
        'device node vanished (removed, or the path went away); rescan to rediscover it';
      break;
    case 'EBUSY':
      explanation = 'device busy (opened exclusively by another process?)';
      break;
    case 'EINVAL':
      explanation = 'the kernel rejected the sg_io_hdr (invalid argument)';
      break;
    case 'ENOMEM':
      explanation = 'the kernel could not allocate buffers for the command';
      break;
    case 'EIO':
      explanation = 'input/output error from the SCSI layer';
      break;
    case 'ENOTTY':
      explanation = 'not an SG_IO-capable node (use /dev/sgN)';
      break;
    default:
      explanation = 'system error';
  }
  return new TransportError(
    `${operation} ${path}: ${code}: ${explanation}`,
    path,
    errno,
    code,
    cause === undefined ? undefined : { cause },
  );
}

/** Options of `createSgioTransport`. */
export interface SgioTransportOptions {
  /**
   * Opcodes that may reach the ioctl.
   * @default SGIO_ALLOWED_OPCODES
   */
  readonly allowedOpcodes?: ReadonlySet<number>;
  /**
   * Extra time after `request.timeoutMs` before the transport stops waiting for an ioctl that the kernel never
   * completes (LIO's PREEMPT AND ABORT through tcm_loop never returns) and reports DID_TIME_OUT.
   * @default 5000
   */
  readonly watchdogGraceMs?: number;
}

/** The SG_IO transport plus an explicit start-up check. */
export interface SgioTransport extends ScsiTransport {
  readonly kind: 'sgio';
  /**
   * Loads koffi and runs the `sg_io_hdr_t` layout self-test; rejects with TransportError (code ELAYOUT or
   * ENOKOFFI) when the transport cannot run here. `open()` does the same on first use.
   */
  selfTest(): Promise<{ koffiVersion: string; size: number }>;
}

/** What the lazily loaded koffi binding provides. */
interface SgioBinding {
  readonly koffiVersion: string;
  readonly size: number;
  /** Issues one SG_IO on a worker thread; resolves with the decoded header, or rejects with TransportError. */
  run(
    fd: number,
    path: string,
    request: ScsiRequest,
    onSubmitted: () => void,
    guard: IoctlGuard,
  ): Promise<ScsiResponse>;
}

/** Lets the caller stop waiting for a hung ioctl; the native buffers then stay allocated until it returns. */
interface IoctlGuard {
  abandoned: boolean;
}

let bindingPromise: Promise<SgioBinding> | undefined;

async function loadBinding(): Promise<SgioBinding> {
  if (process.platform !== 'linux') {
    throw new TransportError(`sgio needs Linux, this is ${process.platform}`, '', 0, 'ENOTSUP');
  }
  // Dynamic import: koffi (a native addon) is optional at run time.
  let koffi: typeof import('koffi');
  try {
    const imported = (await import('koffi')) as typeof import('koffi') & {
      default?: typeof import('koffi');
    };
    koffi = imported.default ?? imported;
  } catch (err) {
    throw new TransportError(
      'sgio needs the koffi package (npm install koffi@3)',
      '',
      0,
      'ENOKOFFI',
      {
        cause: err,
      },
    );
  }
  const SgIoHdr = koffi.struct('prfleet_sg_io_hdr_t', {
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
  });
  const offsets: Record<string, number> = {};
  for (const field of Object.keys(SG_IO_HDR_LAYOUT.offsets))
    offsets[field] = koffi.offsetof(SgIoHdr, field);
  const problems = checkSgIoHdrLayout({ size: koffi.sizeof(SgIoHdr), offsets });
  if (problems.length > 0) {
    throw new TransportError(
      `sg_io_hdr_t layout self-test failed (${process.arch}): ${problems.join('; ')}; refusing to issue SG_IO`,
      '',
      0,
      'ELAYOUT',
    );
  }
  const libc = koffi.load('libc.so.6');
  // ioctl is variadic in C, and koffi cannot run variadic functions async; a fixed 3-argument prototype is
  // equivalent on the x86-64 SysV ABI (the third argument travels in a register either way).
  const ioctl = libc.func('int ioctl(int fd, unsigned long request, void *arg)');

  interface DecodedHdr {
    status: number;
    sb_len_wr: number;
    host_status: number;
    driver_status: number;
    resid: number;
    duration: number;
  }

  /** SG_SCSI_RESET(SG_SCSI_RESET_DEVICE): the kernel sends a LOGICAL UNIT RESET and waits for it. */
  function reset(
    fd: number,
    path: string,
    guard: IoctlGuard,
    onSubmitted: () => void,
  ): Promise<ScsiResponse> {
    const arg: unknown = koffi.alloc('int', 1);
    koffi.encode(arg, 'int', SG_SCSI_RESET_DEVICE);
    const started = performance.now();
    return new Promise<ScsiResponse>((resolve, reject) => {
      ioctl.async(fd, SG_SCSI_RESET, arg, (err: unknown, rc: number) => {
        const errno = koffi.errno();
        try {
          if (guard.abandoned) return;
          const failed = ioctlFailure(err, rc, errno, path);
          if (failed !== undefined) {
            reject(failed);
            return;
          }
          resolve({
            status: 0,
            sense: new Uint8Array(0),
            dataIn: new Uint8Array(0),
            resid: 0,
            hostStatus: 0,
            driverStatus: 0,
            durationMs: Math.round(performance.now() - started),
          });
        } finally {
          koffi.free(arg);
        }
      });
      onSubmitted();
    });
  }

  return {
    koffiVersion: String((koffi as { version?: unknown }).version ?? 'unknown'),
    size: koffi.sizeof(SgIoHdr),
    run(fd, path, request, onSubmitted, guard) {
      if (request.reset === 'logical-unit') return reset(fd, path, guard, onSubmitted);
      const outData = request.dataOut ?? new Uint8Array(0);
      const direction =
        outData.length > 0
          ? SG_DXFER_TO_DEV
          : request.dataInLength > 0
            ? SG_DXFER_FROM_DEV
            : SG_DXFER_NONE;
      const transferLength = direction === SG_DXFER_TO_DEV ? outData.length : request.dataInLength;
      // Native memory: stable while the worker thread and the kernel use it; freed when the ioctl returns.
      const cdbPtr: unknown = koffi.alloc('uint8_t', request.cdb.length);
      const sensePtr: unknown = koffi.alloc('uint8_t', SENSE_BUFFER_LENGTH);
      const dataPtr: unknown = transferLength > 0 ? koffi.alloc('uint8_t', transferLength) : null;
      const hdrPtr: unknown = koffi.alloc(SgIoHdr, 1);
      const free = (): void => {
        for (const p of [cdbPtr, sensePtr, dataPtr, hdrPtr]) if (p !== null) koffi.free(p);
      };
      try {
        new Uint8Array(koffi.view(cdbPtr, request.cdb.length)).set(request.cdb);
        new Uint8Array(koffi.view(sensePtr, SENSE_BUFFER_LENGTH)).fill(0);
        if (dataPtr !== null) {
          const view = new Uint8Array(koffi.view(dataPtr, transferLength));
          view.fill(0);
          if (direction === SG_DXFER_TO_DEV) view.set(outData);
        }
        koffi.encode(hdrPtr, SgIoHdr, {
          interface_id: SG_INTERFACE_ID,
          dxfer_direction: direction,
          cmd_len: request.cdb.length,
          mx_sb_len: SENSE_BUFFER_LENGTH,
          iovec_count: 0,
          dxfer_len: transferLength,
          dxferp: dataPtr,
          cmdp: cdbPtr,
          sbp: sensePtr,
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
        });
      } catch (err) {
        free();
        throw err;
      }
      return new Promise<ScsiResponse>((resolve, reject) => {
        ioctl.async(fd, SG_IO, hdrPtr, (err: unknown, rc: number) => {
          // koffi restores the worker's errno around this callback: read it before anything else.
          const errno = koffi.errno();
          try {
            if (guard.abandoned) return; // the watchdog already answered; only free below
            const failed = ioctlFailure(err, rc, errno, path);
            if (failed !== undefined) {
              reject(failed);
              return;
            }
            const hdr = koffi.decode(hdrPtr, SgIoHdr) as DecodedHdr;
            const senseLength = Math.min(hdr.sb_len_wr, SENSE_BUFFER_LENGTH);
            const sense = new Uint8Array(koffi.view(sensePtr, SENSE_BUFFER_LENGTH)).slice(
              0,
              senseLength,
            );
            // resid can exceed dxfer_len or go negative on some HBAs; clamp so dataIn stays within the buffer.
            const resid = Math.max(0, Math.min(hdr.resid, transferLength));
            const dataIn =
              direction === SG_DXFER_FROM_DEV && dataPtr !== null
                ? new Uint8Array(koffi.view(dataPtr, transferLength)).slice(
                    0,
                    transferLength - resid,
                  )
                : new Uint8Array(0);
            resolve({
              status: hdr.status,
              sense,
              dataIn,
              resid: direction === SG_DXFER_FROM_DEV ? resid : hdr.resid,
              hostStatus: hdr.host_status,
              driverStatus: hdr.driver_status,
              durationMs: hdr.duration,
            });
          } catch (decodeErr) {
            reject(decodeErr);
          } finally {
            free();
          }
        });
        onSubmitted();
      });
    },
  };
}

function getBinding(): Promise<SgioBinding> {
  bindingPromise ??= loadBinding();
  // A failed load is remembered: the result cannot change within one process.
  return bindingPromise;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const err = new Error('the operation was aborted', { cause: reason });
  err.name = 'AbortError';
  return err;
}

/** The host status the watchdog reports for an ioctl the kernel never completed (DID_TIME_OUT, scsi-pr.md §10.3). */
const DID_TIME_OUT = 0x03;

class SgioDevice implements ScsiDevice {
  /** Commands run one at a time per node, in arrival order (PR commands must not overtake each other). */
  private tail: Promise<unknown> = Promise.resolve();
  private inFlight = 0;
  private closed = false;
  /** Set when the node vanished (ENODEV/ENXIO/ENOENT from the ioctl). */
  private vanished: TransportError | undefined;
  /** Set when an ioctl outlived its watchdog: the node is stuck and later commands fail fast. */
  private wedgedBy: string | undefined;

  constructor(
    readonly path: string,
    private readonly file: FileHandle,
    private readonly binding: SgioBinding,
    private readonly options: Required<SgioTransportOptions>,
  ) {}

  execute(request: ScsiRequest, options?: { signal?: AbortSignal }): Promise<ScsiResponse> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const refusal = refuseRequest(request, this.options.allowedOpcodes);
    if (refusal !== undefined) {
      return Promise.reject(
        new TransportError(
          `refused on ${this.path}: ${refusal}`,
          this.path,
          errnoNumber('EINVAL'),
          'EREFUSED',
        ),
      );
    }
    const run = this.tail.then(() => this.runOne(request, signal));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async runOne(
    request: ScsiRequest,
    signal: AbortSignal | undefined,
  ): Promise<ScsiResponse> {
    // The signal counts until submission: a command still queued behind another is dropped on abort.
    if (signal?.aborted) throw abortError(signal);
    if (this.vanished) throw this.vanished; // the node is gone: every later command gets the same answer
    if (this.closed)
      throw new TransportError(`${this.path} is closed`, this.path, errnoNumber('EBADF'), 'EBADF');
    if (this.wedgedBy !== undefined) {
      throw new TransportError(
        `${this.path} is wedged: ${this.wedgedBy} never completed; reopen the device after it recovers`,
        this.path,
        errnoNumber('EIO'),
        'EWEDGED',
      );
    }
    const guard: IoctlGuard = { abandoned: false };
    const started = performance.now();
    this.inFlight++;
    const ioctl = this.binding
      .run(this.file.fd, this.path, request, () => undefined, guard)
      .finally(() => this.inFlight--);
    const watchdogMs = request.timeoutMs + this.options.watchdogGraceMs;
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<ScsiResponse>((resolve) => {
      timer = setTimeout(() => {
        guard.abandoned = true;
        const opcode = request.cdb[0] ?? 0;
        this.wedgedBy = `opcode 0x${opcode.toString(16).padStart(2, '0')} submitted ${Math.round(performance.now() - started)} ms ago`;
        // The kernel never answered: report it as a host-side timeout, so the result's outcome is UNKNOWN.
        resolve({
          status: 0,
          sense: new Uint8Array(0),
          dataIn: new Uint8Array(0),
          resid: request.dataInLength,
          hostStatus: DID_TIME_OUT,
          driverStatus: 0,
          durationMs: Math.round(performance.now() - started),
        });
      }, watchdogMs);
      timer.unref();
    });
    try {
      return await Promise.race([ioctl, watchdog]);
    } catch (err) {
      if (err instanceof TransportError && ['ENODEV', 'ENXIO', 'ENOENT'].includes(err.code)) {
        this.closed = true;
        this.vanished = err;
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (this.closed && this.inFlight === 0 && this.wedgedBy === undefined) {
      await this.file.close().catch(() => undefined);
      return;
    }
    this.closed = true;
    // A wedged ioctl still references the fd; closing it would let the number be reused under the kernel's feet.
    if (this.wedgedBy !== undefined) return;
    await this.tail;
    await this.file.close().catch(() => undefined);
  }
}

/**
 * Creates the SG_IO transport (`kind: 'sgio'`). koffi is loaded and the layout self-test runs on the first
 * `open()` or `selfTest()`; both reject with TransportError when the transport cannot run on this machine.
 * Devices reject commands outside the opcode allow-list with TransportError code EREFUSED before any ioctl.
 */
export function createSgioTransport(options: SgioTransportOptions = {}): SgioTransport {
  const resolved: Required<SgioTransportOptions> = {
    allowedOpcodes: options.allowedOpcodes ?? SGIO_ALLOWED_OPCODES,
    watchdogGraceMs: options.watchdogGraceMs ?? 5000,
  };
  return {
    kind: 'sgio',
    async selfTest() {
      const binding = await getBinding();
      return { koffiVersion: binding.koffiVersion, size: binding.size };
    },
    async open(path, openOptions) {
      const signal = openOptions?.signal;
      if (signal?.aborted) throw abortError(signal);
      const binding = await getBinding();
      // O_NONBLOCK as sg3_utils does: open must not wait for the device; SG_IO itself is synchronous per call.
      const flags =
        (openOptions?.readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR) |
        fsConstants.O_NONBLOCK;
      let file: FileHandle;
      try {
        file = await openFile(path, flags);
      } catch (err) {
        const errno = Math.abs(Number((err as NodeJS.ErrnoException).errno ?? 0));
        throw transportErrorFromErrno(errno, path, 'open', err);
      }
      if (signal?.aborted) {
        await file.close();
        throw abortError(signal);
      }
      return new SgioDevice(path, file, binding, resolved);
    },
  };
}

/** Why an async ioctl through koffi failed (the FFI call itself, or the kernel's -1 with errno); undefined if it ran. */
function ioctlFailure(
  err: unknown,
  rc: number,
  errno: number,
  path: string,
): TransportError | undefined {
  if (err)
    return new TransportError(`ioctl ${path}: koffi call failed`, path, 0, 'EFFI', { cause: err });
  if (rc < 0) return transportErrorFromErrno(errno, path, 'ioctl');
  return undefined;
}
