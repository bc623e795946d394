/**
 * The native side of the SG_IO transport: koffi (FFI, no compiler at install time) loaded on first use, the
 * `sg_io_hdr_t` declared and checked against the C layout, and the ioctls themselves. Each ioctl runs on a libuv
 * worker thread (koffi `.async`), so a slow device never blocks the event loop.
 */
import type * as KoffiModule from 'koffi';
import type { ScsiRequest, ScsiResponse } from '../../src/scsi/exchange.js';
import { ioctlFailure } from './sgio-errors.js';
import {
  SENSE_BUFFER_LENGTH,
  SG_DXFER_FROM_DEV,
  SG_DXFER_TO_DEV,
  SG_IO,
  SG_IO_HDR_FIELDS,
  SG_IO_HDR_LAYOUT,
  SG_SCSI_RESET,
  SG_SCSI_RESET_DEVICE,
  checkSgIoHdrLayout,
  dataTransferOf,
  responseOf,
  sgIoHdrOf,
  type CompletedHdr,
  type DataTransfer,
} from './sgio-layout.js';
import { TransportError } from './transport.js';

type Koffi = typeof KoffiModule;
type KoffiType = KoffiModule.TypeObject;
type KoffiFunction = ReturnType<KoffiModule.LibraryHandle['func']>;

/** Lets the caller stop waiting for a hung ioctl; the native buffers then stay allocated until it returns. */
export interface IoctlGuard {
  abandoned: boolean;
}

/** What the lazily loaded koffi binding provides. */
export interface SgioBinding {
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

/** Native memory of one SG_IO: stable while the worker thread and the kernel use it; freed when the ioctl returns. */
interface NativeBuffers {
  readonly hdr: unknown;
  readonly cdb: unknown;
  readonly sense: unknown;
  readonly data: unknown;
}

/** Dynamic import: koffi (a native addon) is optional at run time. */
async function importKoffi(): Promise<Koffi> {
  if (process.platform !== 'linux') {
    throw new TransportError(`sgio needs Linux, this is ${process.platform}`, '', 0, 'ENOTSUP');
  }
  try {
    const imported = (await import('koffi')) as Koffi & { default?: Koffi };
    return imported.default ?? imported;
  } catch (err) {
    throw new TransportError(
      'sgio needs the koffi package (npm install koffi@3)',
      '',
      0,
      'ENOKOFFI',
      { cause: err },
    );
  }
}

/** Declares `sg_io_hdr_t` to koffi and refuses (ELAYOUT) when its layout is not the C one. */
function declareSgIoHdr(koffi: Koffi): KoffiType {
  const hdr = koffi.struct('prfleet_sg_io_hdr_t', SG_IO_HDR_FIELDS);
  const offsets: Record<string, number> = {};
  for (const field of Object.keys(SG_IO_HDR_LAYOUT.offsets))
    offsets[field] = koffi.offsetof(hdr, field);
  const problems = checkSgIoHdrLayout({ size: koffi.sizeof(hdr), offsets });
  if (problems.length > 0) {
    throw new TransportError(
      `sg_io_hdr_t layout self-test failed (${process.arch}): ${problems.join('; ')}; refusing to issue SG_IO`,
      '',
      0,
      'ELAYOUT',
    );
  }
  return hdr;
}

async function loadBinding(): Promise<SgioBinding> {
  const koffi = await importKoffi();
  const hdr = declareSgIoHdr(koffi);
  const libc = koffi.load('libc.so.6');
  // ioctl is variadic in C, and koffi cannot run variadic functions async; a fixed 3-argument prototype is
  // equivalent on the x86-64 SysV ABI (the third argument travels in a register either way).
  const ioctl = libc.func('int ioctl(int fd, unsigned long request, void *arg)');
  return new KoffiSgio(koffi, hdr, ioctl);
}

let bindingPromise: Promise<SgioBinding> | undefined;

/** The binding, loaded on first call. A failed load is remembered: it cannot change within one process. */
export function getBinding(): Promise<SgioBinding> {
  bindingPromise ??= loadBinding();
  return bindingPromise;
}

/** SG_IO and SG_SCSI_RESET through koffi's async calls. */
class KoffiSgio implements SgioBinding {
  readonly koffiVersion: string;
  readonly size: number;

  constructor(
    private readonly koffi: Koffi,
    private readonly hdr: KoffiType,
    private readonly ioctl: KoffiFunction,
  ) {
    this.koffiVersion = typeof koffi.version === 'string' ? koffi.version : 'unknown';
    this.size = koffi.sizeof(hdr);
  }

  run(
    fd: number,
    path: string,
    request: ScsiRequest,
    onSubmitted: () => void,
    guard: IoctlGuard,
  ): Promise<ScsiResponse> {
    if (request.reset === 'logical-unit') return this.reset(fd, path, guard, onSubmitted);
    const transfer = dataTransferOf(request);
    const buffers = this.prepare(request, transfer);
    return new Promise<ScsiResponse>((resolve, reject) => {
      this.ioctl.async(fd, SG_IO, buffers.hdr, (err: unknown, rc: number) => {
        // koffi restores the worker's errno around this callback: read it before anything else.
        const errno = this.koffi.errno();
        try {
          if (guard.abandoned) return; // the watchdog already answered; only free below
          const failed = ioctlFailure(err, rc, errno, path);
          if (failed !== undefined) {
            reject(failed);
            return;
          }
          resolve(this.decode(buffers, transfer));
        } catch (decodeErr) {
          reject(decodeErr instanceof Error ? decodeErr : new Error(String(decodeErr)));
        } finally {
          this.free(buffers);
        }
      });
      onSubmitted();
    });
  }

  /** Allocates and fills the native buffers and the header of `request` (all freed again if that fails). */
  private prepare(request: ScsiRequest, transfer: DataTransfer): NativeBuffers {
    const { koffi } = this;
    const buffers: NativeBuffers = {
      cdb: koffi.alloc('uint8_t', request.cdb.length),
      sense: koffi.alloc('uint8_t', SENSE_BUFFER_LENGTH),
      data: transfer.length > 0 ? koffi.alloc('uint8_t', transfer.length) : null,
      hdr: koffi.alloc(this.hdr, 1),
    };
    try {
      new Uint8Array(koffi.view(buffers.cdb, request.cdb.length)).set(request.cdb);
      new Uint8Array(koffi.view(buffers.sense, SENSE_BUFFER_LENGTH)).fill(0);
      if (buffers.data !== null) {
        const view = new Uint8Array(koffi.view(buffers.data, transfer.length));
        view.fill(0);
        if (transfer.direction === SG_DXFER_TO_DEV) view.set(transfer.out);
      }
      koffi.encode(buffers.hdr, this.hdr, sgIoHdrOf(request, transfer, buffers));
    } catch (err) {
      this.free(buffers);
      throw err;
    }
    return buffers;
  }

  /** The response in a completed header, copied out of the native buffers. */
  private decode(buffers: NativeBuffers, transfer: DataTransfer): ScsiResponse {
    const { koffi } = this;
    const hdr = koffi.decode(buffers.hdr, this.hdr) as CompletedHdr;
    const sense = new Uint8Array(koffi.view(buffers.sense, SENSE_BUFFER_LENGTH));
    const data =
      transfer.direction === SG_DXFER_FROM_DEV && buffers.data !== null
        ? new Uint8Array(koffi.view(buffers.data, transfer.length))
        : undefined;
    return responseOf(hdr, transfer, sense, data);
  }

  private free(buffers: NativeBuffers): void {
    for (const p of [buffers.cdb, buffers.sense, buffers.data, buffers.hdr])
      if (p !== null) this.koffi.free(p);
  }

  /** SG_SCSI_RESET(SG_SCSI_RESET_DEVICE): the kernel sends a LOGICAL UNIT RESET and waits for it. */
  private reset(
    fd: number,
    path: string,
    guard: IoctlGuard,
    onSubmitted: () => void,
  ): Promise<ScsiResponse> {
    const { koffi } = this;
    const arg: unknown = koffi.alloc('int', 1);
    koffi.encode(arg, 'int', SG_SCSI_RESET_DEVICE);
    const started = performance.now();
    return new Promise<ScsiResponse>((resolve, reject) => {
      this.ioctl.async(fd, SG_SCSI_RESET, arg, (err: unknown, rc: number) => {
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
}
