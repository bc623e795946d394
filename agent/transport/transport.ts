import type { ScsiRequest, ScsiResponse } from '../../src/scsi/exchange.js';

/** Why a device node could not be used: an errno from open/ioctl, or a node that vanished. */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    message: string,
    readonly path: string,
    readonly errno: number,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Real SG_IO on /dev/sgN, or an LU of the in-memory emulator seen through one I_T nexus. */
export interface ScsiTransport {
  /** Transport name as reported in Hello ("sgio" or "emulated"). */
  readonly kind: 'sgio' | 'emulated';
  /** Opens one path. Rejects with TransportError (errno) when the node cannot be opened. */
  open(path: string, options?: { readOnly?: boolean; signal?: AbortSignal }): Promise<ScsiDevice>;
}

export interface ScsiDevice {
  readonly path: string;
  /**
   * Resolves with whatever the device said, GOOD or not. `signal` counts until submission; then the command
   * runs to completion or `request.timeoutMs`. Rejects only with TransportError (open/ioctl errno) or
   * AbortError (aborted before submission).
   */
  execute(request: ScsiRequest, options?: { signal?: AbortSignal }): Promise<ScsiResponse>;
  close(): Promise<void>;
}
