/**
 * REPORT LUNS parameter data (SPC-4 6.33): LUN LIST LENGTH, then one 8-byte LUN per logical unit. LUNs below 256
 * use peripheral device addressing (00b), 256–16383 flat space addressing (01b), as Linux and LIO do (SAM-5).
 */
import { checkInt, concat, need, readUint, writeUint } from './bytes.js';
import { ScsiDecodeError } from './errors.js';

/** Largest LUN expressible in single-level flat space addressing. */
export const MAX_LUN = 0x3fff;

/** Decoded REPORT LUNS data; `truncated` when fewer than 8 + LUN LIST LENGTH bytes arrived. */
export interface ReportLunsData {
  lunListLength: number;
  luns: number[];
  truncated: boolean;
}

/** Encodes REPORT LUNS data for LUNs 0–16383. */
export function encodeReportLunsData(luns: readonly number[]): Uint8Array {
  const body = new Uint8Array(8 * luns.length);
  luns.forEach((lun, i) => {
    checkInt(lun, 0, MAX_LUN, 'lun');
    if (lun < 256) body[8 * i + 1] = lun;
    else writeUint(body, 8 * i, 2, 0x4000 | lun);
  });
  const head = new Uint8Array(8);
  writeUint(head, 0, 4, body.length);
  return concat([head, body]);
}

/**
 * Decodes REPORT LUNS data (whole LUNs only when truncated). Throws ScsiDecodeError for a LUN LIST LENGTH that is
 * not a multiple of 8, or a LUN that is not single-level peripheral or flat space addressing.
 */
export function decodeReportLunsData(bytes: Uint8Array): ReportLunsData {
  need(bytes, 0, 8, 'lun list length');
  const lunListLength = readUint(bytes, 0, 4, 'lun list length');
  if (lunListLength % 8 !== 0) {
    throw new ScsiDecodeError(
      `lun list length ${lunListLength} is not a multiple of 8`,
      'lun list length',
      0,
    );
  }
  const end = Math.min(bytes.length, 8 + lunListLength);
  const luns: number[] = [];
  for (let at = 8; at + 8 <= end; at += 8) {
    const first = bytes[at] as number;
    const method = first >> 6;
    for (let i = 2; i < 8; i++) {
      if (bytes[at + i] !== 0) {
        throw new ScsiDecodeError(
          `lun at byte ${at} has a second level (byte ${at + i} is not 0)`,
          'lun',
          at + i,
        );
      }
    }
    if (method === 0) luns.push(((first & 0x3f) << 8) | (bytes[at + 1] as number));
    else if (method === 1) luns.push(((first & 0x3f) << 8) | (bytes[at + 1] as number));
    else {
      throw new ScsiDecodeError(
        `lun at byte ${at} uses address method ${method}, only peripheral (0) and flat (1) are supported`,
        'lun',
        at,
      );
    }
  }
  return { lunListLength, luns, truncated: bytes.length < 8 + lunListLength };
}
