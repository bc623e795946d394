/**
 * One SCSI command as bytes, and what the device answered. Every transport (the in-memory emulator, Linux
 * SG_IO) speaks exactly this, so the agent, the conformance runner and transcripts never see anything else.
 */
export interface ScsiRequest {
  /** The CDB (6, 10, 12 or 16 bytes). */
  readonly cdb: Uint8Array;
  /** Data-out (parameter list); absent or empty for commands without one. */
  readonly dataOut?: Uint8Array;
  /** Bytes the initiator will accept as data-in (SG_IO dxfer_len); 0 for none. */
  readonly dataInLength: number;
  /** Device command timeout in milliseconds (SG_IO timeout). */
  readonly timeoutMs: number;
  /**
   * Set for a logical unit reset (a task management function, `cdb` empty): SG_IO transports issue the
   * SG_SCSI_RESET ioctl (SG_SCSI_RESET_DEVICE), the emulator resets the LU.
   */
  readonly reset?: 'logical-unit';
}

/** What the device (and the host adapter, for SG_IO) said. */
export interface ScsiResponse {
  /** SAM status byte (00h GOOD, 02h CHECK CONDITION, 18h RESERVATION CONFLICT, …). */
  readonly status: number;
  /** Sense bytes actually written (empty when none). */
  readonly sense: Uint8Array;
  /** Data-in actually transferred (dataInLength − resid bytes). */
  readonly dataIn: Uint8Array;
  /** dataInLength minus the bytes transferred. */
  readonly resid: number;
  /** Linux host_status (DID_*); 0 for the emulator. */
  readonly hostStatus: number;
  /** Linux driver_status; 0 or DRIVER_SENSE (08h). */
  readonly driverStatus: number;
  /** Time the device took, in milliseconds. */
  readonly durationMs: number;
}
