import { createHash } from 'node:crypto';
import { StoreInputError } from './errors.js';

/** A JSON value as the store keeps it (jsonb). bigint is not JSON: convert keys with keyToHex first. */
export type JsonValue =
  null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/**
 * Serialises `value` canonically: object keys sorted by UTF-16 code unit, no whitespace, numbers and
 * strings as JSON.stringify writes them. For our values (strings, safe integers, booleans, null) this is
 * the JSON Canonicalization Scheme of RFC 8785. Throws StoreInputError for what JSON cannot hold
 * (bigint, undefined, functions, non-finite numbers), naming where it was found.
 */
export function canonicalJson(value: unknown, where = '$'): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string')
    return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw new StoreInputError(where, `invalid JSON at ${where}: ${value} is not finite`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value))
    return `[${value.map((v, i) => canonicalJson(v, `${where}[${i}]`)).join(',')}]`;
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined) // like JSON.stringify: an absent optional field is no field
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v, `${where}.${k}`)}`).join(',')}}`;
  }
  const shown = typeof value === 'bigint' ? `${value}n` : typeof value;
  throw new StoreInputError(where, `invalid JSON at ${where}: ${shown} cannot be stored as JSON`);
}

/** sha256 (hex) of the canonical JSON of `value`. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}
