/**
 * TransportIDs: the identity of an initiator port in PROUT parameter lists and READ FULL STATUS (scsi-pr.md §4).
 * FC and SAS are 24 bytes; iSCSI is variable (a multiple of 4, at least 24); any other protocol or format is
 * kept as raw bytes so nothing the device sent is lost.
 */
import {
  asciiBytes,
  byteAt,
  checkBig,
  fromHex,
  latin1,
  need,
  readBig,
  readUint,
  toHex,
  writeBig,
  writeUint,
} from './bytes.js';
import { ProtocolId } from './constants.js';
import { ScsiDecodeError, ScsiEncodeError } from './errors.js';

/** An initiator port identity. `isid` is 12 lower-case hex digits (format 01b); absent for format 00b. */
export type TransportId =
  | { protocol: 'fc'; wwpn: bigint }
  | { protocol: 'sas'; sasAddress: bigint }
  | { protocol: 'iscsi'; name: string; isid?: string }
  | { protocol: 'raw'; bytes: Uint8Array };

/** Fixed TransportID size for every protocol except iSCSI (SPC-4 7.6.4). */
export const FIXED_TRANSPORT_ID_LENGTH = 24;
/** Longest iSCSI name in bytes (RFC 3720 §3.2.6.1). */
export const MAX_ISCSI_NAME_LENGTH = 223;
const ISID_SEPARATOR = ',i,0x';

/** Why `name` cannot be an iSCSI name in a TransportID (length, characters), or undefined when it can. */
export function iscsiNameError(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_ISCSI_NAME_LENGTH) return `is longer than ${MAX_ISCSI_NAME_LENGTH} bytes`;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    // Printable ASCII without space; ',' would be ambiguous with the ",i,0x" ISID separator.
    if (c <= 0x20 || c > 0x7e || c === 0x2c) return `has an invalid character at ${i}`;
  }
  return undefined;
}

/** Encodes a TransportID: FC/SAS 24 bytes; iSCSI NUL-terminated, padded to a multiple of 4 and at least 24 bytes. */
export function encodeTransportId(t: TransportId): Uint8Array {
  switch (t.protocol) {
    case 'fc': {
      const out = new Uint8Array(FIXED_TRANSPORT_ID_LENGTH);
      out[0] = ProtocolId.FC;
      writeBig(out, 8, 8, checkBig(t.wwpn, 64, 'wwpn'));
      return out;
    }
    case 'sas': {
      const out = new Uint8Array(FIXED_TRANSPORT_ID_LENGTH);
      out[0] = ProtocolId.SAS;
      writeBig(out, 4, 8, checkBig(t.sasAddress, 64, 'sasAddress'));
      return out;
    }
    case 'iscsi': {
      const problem = iscsiNameError(t.name);
      if (problem !== undefined)
        throw new ScsiEncodeError(`invalid iscsi name: "${t.name}" ${problem}`, 'name');
      let text = t.name;
      if (t.isid !== undefined) {
        if (!/^[0-9a-fA-F]{12}$/.test(t.isid)) {
          throw new ScsiEncodeError(`invalid isid: "${t.isid}" is not 12 hex digits`, 'isid');
        }
        text += ISID_SEPARATOR + t.isid.toLowerCase();
      }
      const chars = asciiBytes(text, 'name');
      // Name + NUL, padded to a multiple of 4, total at least 24 (additional length ≥ 20).
      const body = Math.max(20, Math.ceil((chars.length + 1) / 4) * 4);
      const out = new Uint8Array(4 + body);
      out[0] = (t.isid !== undefined ? 0x40 : 0x00) | ProtocolId.ISCSI;
      writeUint(out, 2, 2, body);
      out.set(chars, 4);
      return out;
    }
    case 'raw': {
      if (!(t.bytes instanceof Uint8Array) || t.bytes.length === 0) {
        throw new ScsiEncodeError('invalid raw transport id: no bytes', 'bytes');
      }
      let length: number;
      try {
        length = transportIdLength(t.bytes, 0, t.bytes.length);
      } catch (e) {
        throw new ScsiEncodeError(`invalid raw transport id: ${(e as Error).message}`, 'bytes', {
          cause: e,
        });
      }
      if (length !== t.bytes.length) {
        throw new ScsiEncodeError(
          `invalid raw transport id: its header says ${length} bytes, ${t.bytes.length} given`,
          'bytes',
        );
      }
      return t.bytes.slice();
    }
  }
}

/** Length of the TransportID at `offset` from its header, checked against `end`. */
function transportIdLength(bytes: Uint8Array, offset: number, end: number): number {
  const first = byteAt(bytes, offset, 'transport id');
  let length = FIXED_TRANSPORT_ID_LENGTH;
  if ((first & 0x0f) === ProtocolId.ISCSI)
    length = 4 + readUint(bytes, offset + 2, 2, 'transport id additional length');
  if (offset + length > end) {
    throw new ScsiDecodeError(
      `transport id at byte ${offset} needs ${length} bytes, only ${Math.max(0, end - offset)} present`,
      (first & 0x0f) === ProtocolId.ISCSI ? 'transport id additional length' : 'transport id',
      (first & 0x0f) === ProtocolId.ISCSI ? offset + 2 : offset,
    );
  }
  return length;
}

/**
 * Decodes the TransportID at `offset` (and not past `end`, default the buffer's end).
 * Returns it and its length in bytes; throws ScsiDecodeError naming field and absolute offset.
 */
export function decodeTransportId(
  bytes: Uint8Array,
  offset = 0,
  end = bytes.length,
): { transportId: TransportId; length: number } {
  const limit = Math.min(end, bytes.length);
  need(bytes.subarray(0, limit), offset, 1, 'transport id');
  const length = transportIdLength(bytes, offset, limit);
  const first = bytes[offset] as number;
  const format = first >> 6;
  const protocol = first & 0x0f;
  const raw = (): { transportId: TransportId; length: number } => ({
    transportId: { protocol: 'raw', bytes: bytes.slice(offset, offset + length) },
    length,
  });
  if (format !== 0 && !(protocol === ProtocolId.ISCSI && format === 1)) return raw();
  switch (protocol) {
    case ProtocolId.FC:
      return {
        transportId: { protocol: 'fc', wwpn: readBig(bytes, offset + 8, 8, 'n_port_name') },
        length,
      };
    case ProtocolId.SAS:
      return {
        transportId: { protocol: 'sas', sasAddress: readBig(bytes, offset + 4, 8, 'sas address') },
        length,
      };
    case ProtocolId.ISCSI: {
      const nameStart = offset + 4;
      const stop = bytes.subarray(nameStart, offset + length).indexOf(0);
      if (stop < 0) {
        throw new ScsiDecodeError(
          `iscsi name at byte ${nameStart} is not NUL-terminated`,
          'iscsi name',
          nameStart,
        );
      }
      const text = latin1(bytes, nameStart, nameStart + stop);
      let name = text;
      let isid: string | undefined;
      if (format === 1) {
        const at = text.toLowerCase().lastIndexOf(ISID_SEPARATOR);
        if (at < 0) {
          throw new ScsiDecodeError(
            `iscsi port name "${text}" at byte ${nameStart} has no ",i,0x" separator`,
            'iscsi name',
            nameStart,
          );
        }
        name = text.slice(0, at);
        isid = text.slice(at + ISID_SEPARATOR.length);
        if (!/^[0-9a-fA-F]{12}$/.test(isid)) {
          throw new ScsiDecodeError(
            `iscsi isid "${isid}" at byte ${nameStart + at + ISID_SEPARATOR.length} is not 12 hex digits`,
            'isid',
            nameStart + at + ISID_SEPARATOR.length,
          );
        }
        isid = isid.toLowerCase();
      }
      const problem = iscsiNameError(name);
      if (problem !== undefined) {
        throw new ScsiDecodeError(
          `iscsi name at byte ${nameStart} ${problem}`,
          'iscsi name',
          nameStart,
        );
      }
      return {
        transportId:
          isid === undefined ? { protocol: 'iscsi', name } : { protocol: 'iscsi', name, isid },
        length,
      };
    }
    default:
      return raw();
  }
}

/**
 * Printable form: `fc:0x21000024ff123456`, `sas:0x5000c50012345678`, `iscsi:iqn…`, `iscsi:iqn…,i,0x23d000000001`,
 * `raw:<hex>`.
 */
export function formatTransportId(t: TransportId): string {
  switch (t.protocol) {
    case 'fc':
      return `fc:0x${t.wwpn.toString(16).padStart(16, '0')}`;
    case 'sas':
      return `sas:0x${t.sasAddress.toString(16).padStart(16, '0')}`;
    case 'iscsi':
      return t.isid === undefined
        ? `iscsi:${t.name}`
        : `iscsi:${t.name}${ISID_SEPARATOR}${t.isid.toLowerCase()}`;
    case 'raw':
      return `raw:${toHex(t.bytes)}`;
  }
}

function parsePortName(text: string, original: string): bigint {
  let hex: string | undefined;
  if (/^(0x)?[0-9a-f]{1,16}$/i.test(text)) hex = text.replace(/^0x/i, '');
  else if (/^[0-9a-f]{2}(:[0-9a-f]{2}){7}$/i.test(text)) hex = text.replace(/:/g, '');
  if (hex === undefined) {
    throw new ScsiEncodeError(
      `invalid transport id: "${original}" needs a 64-bit hex port name`,
      'transportId',
    );
  }
  return BigInt(`0x${hex}`);
}

/**
 * Parses formatTransportId's output (prefix case-insensitive; FC/SAS also accept `21:00:00:24:ff:12:34:56`).
 * Throws ScsiEncodeError for anything else, or for a value encodeTransportId would refuse.
 */
export function parseTransportId(s: string): TransportId {
  const text = s.trim();
  const colon = text.indexOf(':');
  const prefix = colon < 0 ? '' : text.slice(0, colon).toLowerCase();
  const rest = text.slice(colon + 1);
  let t: TransportId;
  switch (prefix) {
    case 'fc':
      t = { protocol: 'fc', wwpn: parsePortName(rest, s) };
      break;
    case 'sas':
      t = { protocol: 'sas', sasAddress: parsePortName(rest, s) };
      break;
    case 'iscsi': {
      const at = rest.toLowerCase().lastIndexOf(ISID_SEPARATOR);
      t =
        at < 0
          ? { protocol: 'iscsi', name: rest }
          : {
              protocol: 'iscsi',
              name: rest.slice(0, at),
              isid: rest.slice(at + ISID_SEPARATOR.length).toLowerCase(),
            };
      break;
    }
    case 'raw': {
      let bytes: Uint8Array;
      try {
        bytes = fromHex(rest);
      } catch (e) {
        throw new ScsiEncodeError(`invalid transport id: "${s}" has bad hex`, 'transportId', {
          cause: e,
        });
      }
      t = { protocol: 'raw', bytes };
      break;
    }
    default:
      throw new ScsiEncodeError(
        `invalid transport id: "${s}" must start with fc:, sas:, iscsi: or raw:`,
        'transportId',
      );
  }
  try {
    encodeTransportId(t);
  } catch (e) {
    throw new ScsiEncodeError(
      `invalid transport id: "${s}": ${(e as Error).message}`,
      'transportId',
      { cause: e },
    );
  }
  return t;
}

/** True when both name the same initiator port (iSCSI names and ISIDs compare case-insensitively, RFC 3720). */
export function transportIdEquals(a: TransportId, b: TransportId): boolean {
  switch (a.protocol) {
    case 'fc':
      return b.protocol === 'fc' && a.wwpn === b.wwpn;
    case 'sas':
      return b.protocol === 'sas' && a.sasAddress === b.sasAddress;
    case 'iscsi':
      return (
        b.protocol === 'iscsi' &&
        a.name.toLowerCase() === b.name.toLowerCase() &&
        a.isid?.toLowerCase() === b.isid?.toLowerCase()
      );
    case 'raw':
      return (
        b.protocol === 'raw' &&
        a.bytes.length === b.bytes.length &&
        a.bytes.every((v, i) => v === b.bytes[i])
      );
  }
}
