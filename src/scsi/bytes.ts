/**
 * Big-endian byte helpers shared by the codec modules. Readers check bounds and throw ScsiDecodeError naming the
 * field; writers check ranges and throw ScsiEncodeError naming the field.
 * @internal
 */
import { ScsiDecodeError, ScsiEncodeError } from './errors.js';

/** Largest uint64. */
export const UINT64_MAX = (1n << 64n) - 1n;

/** Throws ScsiDecodeError unless `bytes` holds `length` bytes at `offset`. @internal */
export function need(bytes: Uint8Array, offset: number, length: number, field: string): void {
  if (offset + length > bytes.length) {
    throw new ScsiDecodeError(
      `${field} at byte ${offset} needs ${length} byte${length === 1 ? '' : 's'}, only ${Math.max(0, bytes.length - offset)} present`,
      field,
      offset,
    );
  }
}

/** Reads an unsigned big-endian integer of 1–6 bytes. @internal */
export function readUint(bytes: Uint8Array, offset: number, length: number, field: string): number {
  need(bytes, offset, length, field);
  let value = 0;
  for (let i = 0; i < length; i++) value = value * 256 + (bytes[offset + i] as number);
  return value;
}

/** Reads an unsigned big-endian integer of up to 8 bytes as a bigint. @internal */
export function readBig(bytes: Uint8Array, offset: number, length: number, field: string): bigint {
  need(bytes, offset, length, field);
  let value = 0n;
  for (let i = 0; i < length; i++) value = (value << 8n) | BigInt(bytes[offset + i] as number);
  return value;
}

/** Reads one byte (bounds-checked). @internal */
export function byteAt(bytes: Uint8Array, offset: number, field: string): number {
  need(bytes, offset, 1, field);
  return bytes[offset] as number;
}

/** Throws ScsiEncodeError unless `value` is an integer in [min, max]. @internal */
export function checkInt(value: number, min: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ScsiEncodeError(
      `invalid ${field}: ${String(value)} is not an integer in ${min}..${max}`,
      field,
    );
  }
  return value;
}

/** Throws ScsiEncodeError unless `value` is a bigint in [0, 2^bits − 1]. @internal */
export function checkBig(value: bigint, bits: number, field: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value >= 1n << BigInt(bits)) {
    throw new ScsiEncodeError(`invalid ${field}: ${String(value)} is not a uint${bits}`, field);
  }
  return value;
}

/** Writes an unsigned big-endian integer of 1–6 bytes (value already range-checked). @internal */
export function writeUint(bytes: Uint8Array, offset: number, length: number, value: number): void {
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    bytes[offset + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

/** Writes a bigint as `length` big-endian bytes (value already range-checked). @internal */
export function writeBig(bytes: Uint8Array, offset: number, length: number, value: bigint): void {
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    bytes[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** Lower-case hex of `bytes`, no separators: `toHex(Uint8Array.of(0x5f, 1))` → '5f01'. */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * Bytes from hex; spaces, colons and a leading `0x` are ignored ('5f 00 18', '5f:00:18').
 * Throws ScsiEncodeError for odd length or non-hex characters.
 */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new ScsiEncodeError(`invalid hex: "${hex}"`, 'hex');
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Concatenates byte arrays. @internal */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Decodes bytes as Latin-1 (one char per byte); used for ASCII fields. @internal */
export function latin1(bytes: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end && i < bytes.length; i++)
    s += String.fromCharCode(bytes[i] as number);
  return s;
}

/** Encodes printable ASCII (20h–7Eh) into bytes; throws ScsiEncodeError for anything else. @internal */
export function asciiBytes(text: string, field: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      throw new ScsiEncodeError(
        `invalid ${field}: "${text}" has a non-ASCII character at ${i}`,
        field,
      );
    }
    out[i] = c;
  }
  return out;
}

/** Removes trailing spaces and NULs (SPC pads ASCII fields with spaces; some devices use NUL). @internal */
export function trimEndPad(s: string): string {
  return s.replace(/[ \0]+$/, '');
}
