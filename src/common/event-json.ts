/**
 * Fleet events as JSON for people and other programs (`prfleet watch -o json`, and webhook bodies): the proto
 * JSON mapping (enum names, RFC 3339 times, 64-bit numbers as strings), with reservation keys as 16 hex digits
 * like everywhere else in prfleet.
 */
import { FleetEvent, WatchSnapshot } from '../gen/prfleet/v1/events.js';
import { formatKey } from './key-layout.js';

const KEY_FIELDS = new Set([
  'reservationKey',
  'serviceActionKey',
  'holderKey',
  'keys',
  'keysAdded',
  'keysRemoved',
  'key',
]);

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

function hexKeys(value: Json, field = ''): Json {
  if (Array.isArray(value)) return value.map((v) => hexKeys(v, field));
  if (value !== null && typeof value === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) out[k] = hexKeys(v, k);
    return out;
  }
  if (KEY_FIELDS.has(field) && typeof value === 'string' && /^\d+$/.test(value))
    return formatKey(BigInt(value));
  return value;
}

/** One event as a JSON object (`cursor` is a decimal string: resume after it). */
export function eventToJson(event: FleetEvent): { [k: string]: Json } {
  return hexKeys(FleetEvent.toJSON(event) as Json) as { [k: string]: Json };
}

/** A Watch snapshot as a JSON object. */
export function snapshotToJson(snapshot: WatchSnapshot): { [k: string]: Json } {
  return hexKeys(WatchSnapshot.toJSON(snapshot) as Json) as { [k: string]: Json };
}
