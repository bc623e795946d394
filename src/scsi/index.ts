/**
 * The pure SCSI codec: bytes in, values out. No Node APIs; decoders throw only ScsiDecodeError, encoders only
 * ScsiEncodeError.
 */
export * from './errors.js';
export * from './exchange.js';
export * from './keys.js';
export * from './constants.js';
export { toHex, fromHex } from './bytes.js';
export * from './transport-id.js';
export * from './prout.js';
export * from './prin.js';
export * from './sense.js';
export * from './cdb.js';
export * from './inquiry.js';
export * from './report-luns.js';
export * from './element-status.js';
export * from './classify.js';
