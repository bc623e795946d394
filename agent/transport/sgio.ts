/**
 * Real SCSI commands on Linux: SG_IO on /dev/sgN. This module is the transport (what may reach the kernel, one
 * command at a time per node, the watchdog for an ioctl the kernel never completes); sgio-layout.ts holds the
 * `sg_io_hdr_t`, sgio-binding.ts the FFI calls.
 *
 * koffi is imported lazily on first use: machines without it (laptops, macOS, CI jobs that only use the
 * emulator) load this module fine and only fail when a real device is opened.
 */
import { constants as fsConstants } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import type { ScsiRequest, ScsiResponse } from '../../src/scsi/exchange.js';
import { getBinding, type IoctlGuard, type SgioBinding } from './sgio-binding.js';
import { errnoNumber, transportErrorFromErrno } from './sgio-errors.js';
import { TransportError, type ScsiDevice, type ScsiTransport } from './transport.js';

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
