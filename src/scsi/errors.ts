/**
 * Errors of the SCSI codec. Decoders throw only ScsiDecodeError, encoders only ScsiEncodeError, so callers can
 * tell "the device sent bytes we cannot read" from "we were asked to send something impossible".
 */

/** Bytes that cannot be decoded: names the field and the byte offset where reading failed. */
export class ScsiDecodeError extends Error {
  override readonly name = 'ScsiDecodeError';
  /** SPC name of the field that could not be read, e.g. 'additional length'. */
  readonly field: string;
  /** Byte offset of that field in the decoded buffer. */
  readonly offset: number;

  /** `message` is lower case and shows the bad value; `field` and `offset` locate it. */
  constructor(message: string, field: string, offset: number, options?: { cause?: unknown }) {
    super(message, options);
    this.field = field;
    this.offset = offset;
  }
}

/** A value that cannot be encoded (out of range, too long, wrong characters); names the field. */
export class ScsiEncodeError extends Error {
  override readonly name = 'ScsiEncodeError';
  /** Name of the input field that was rejected, e.g. 'reservationKey'. */
  readonly field: string;

  /** `message` is lower case and shows the bad value, e.g. 'invalid key: -1 is not a uint64'. */
  constructor(message: string, field = 'value', options?: { cause?: unknown }) {
    super(message, options);
    this.field = field;
  }
}
