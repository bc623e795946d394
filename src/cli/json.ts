/**
 * JSON output of the CLI: every field present (defaults included, unlike proto3 JSON), enums by name, reservation
 * keys and port names as 16-hex-digit strings, bytes as hex, durations as milliseconds, timestamps as ISO text,
 * oneofs flattened to their case name. `JSON.stringify` never sees a bigint, so it cannot throw on one.
 */
import {
  outcomeToJSON,
  prinActionToJSON,
  proutActionToJSON,
  prTypeToJSON,
} from '../gen/prfleet/v1/scsi.js';
import { formatKey } from '../scsi/keys.js';

/** Field names whose bigint values are reservation keys or port names (printed as `0x` + 16 hex digits). */
const HEX_FIELDS = new Set([
  'key',
  'keys',
  'newKey',
  'preemptKey',
  'destinationKey',
  'reservationKey',
  'serviceActionKey',
  'expectedHolderKey',
  'wwpn',
  'sasAddress',
]);

/** Enum fields and how to name their values. */
const ENUM_FIELDS: Readonly<Record<string, (value: number) => string>> = {
  outcome: outcomeToJSON,
  type: prTypeToJSON,
  types: prTypeToJSON,
  supportedTypes: prTypeToJSON,
  proutActions: proutActionToJSON,
  prinActions: prinActionToJSON,
};

/** A plain JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Converts a ts-proto message (or any value built from them) to plain JSON in the CLI's conventions. */
export function toCliJson(value: unknown, field = ''): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') {
    if (HEX_FIELDS.has(field)) return formatKey(BigInt.asUintN(64, value));
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  if (typeof value === 'number') {
    const namer = ENUM_FIELDS[field];
    return namer ? namer(value) : value;
  }
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((item) => toCliJson(item, field));
  if (typeof value === 'object') return objectToJson(value as Record<string, unknown>);
  return String(value);
}

function objectToJson(object: Record<string, unknown>): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const [name, member] of Object.entries(object)) {
    if (isOneof(member)) {
      out[member.$case] = toCliJson(member.value, member.$case);
    } else if (isDuration(member)) {
      out[`${name}Ms`] = durationMs(member);
    } else {
      out[name] = toCliJson(member, name);
    }
  }
  return out;
}

function isOneof(value: unknown): value is { $case: string; value: unknown } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { $case?: unknown }).$case === 'string'
  );
}

function isDuration(value: unknown): value is { seconds: bigint; nanos: number } {
  if (typeof value !== 'object' || value === null) return false;
  const keys = Object.keys(value);
  const d = value as { seconds?: unknown; nanos?: unknown };
  return keys.length === 2 && typeof d.seconds === 'bigint' && typeof d.nanos === 'number';
}

/** A proto Duration in milliseconds (microsecond precision kept as a fraction). */
export function durationMs(duration: { seconds: bigint; nanos: number }): number {
  return Number(duration.seconds) * 1000 + Math.round(duration.nanos / 1000) / 1000;
}

/** Stringifies CLI JSON with two-space indentation. */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(toCliJson(value), null, 2);
}
