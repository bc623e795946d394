/** Reservation keys: 64-bit values printed as `0x` + 16 lower-case hex digits. */
import { ScsiEncodeError } from './errors.js';

/** Largest reservation key (2^64 − 1). */
export const MAX_KEY = (1n << 64n) - 1n;

/** True when `k` is a bigint in 0..MAX_KEY. */
export function isKey(k: unknown): k is bigint {
  return typeof k === 'bigint' && k >= 0n && k <= MAX_KEY;
}

/** Formats a key as `0x` + 16 lower-case hex digits, e.g. `0x0000000000000077`; throws ScsiEncodeError off range. */
export function formatKey(k: bigint): string {
  if (!isKey(k)) throw new ScsiEncodeError(`invalid key: ${String(k)} is not a uint64`, 'key');
  return `0x${k.toString(16).padStart(16, '0')}`;
}

/**
 * Parses a key written as `0x…` hex (1–16 digits) or decimal (surrounding spaces ignored).
 * Throws ScsiEncodeError('invalid key: … is not a uint64') for anything else.
 */
export function parseKey(s: string): bigint {
  const text = s.trim();
  let value: bigint | undefined;
  if (/^0[xX][0-9a-fA-F]{1,16}$/.test(text)) value = BigInt(text);
  else if (/^[0-9]{1,20}$/.test(text)) value = BigInt(text);
  if (value === undefined || value > MAX_KEY) {
    throw new ScsiEncodeError(`invalid key: ${s} is not a uint64`, 'key');
  }
  return value;
}
