import {
  KEY_PURPOSE_NAMES,
  assertKey,
  decodeKeyLayout,
  formatKey,
  type KeyPurpose,
} from '../../common/key-layout.js';
import { StoreInputError } from './errors.js';
import type { KeyRecord } from './key-registry.js';

/** A row of reservation_keys as queried (KEY_COLUMNS). */
export interface KeyRow {
  key_hex: string;
  origin: 'allocated' | 'adopted';
  purpose: string;
  site: string | null;
  agent_id: string | null;
  owner: string;
  note: string | null;
  created_at: Date;
  revoked_at: Date | null;
  revoked_by: string | null;
  revoke_reason: string | null;
}

/** The columns every key query returns, in KeyRow order. */
export const KEY_COLUMNS =
  'key_hex, origin, purpose, site, agent_id, owner, note, created_at, revoked_at, revoked_by, revoke_reason';

/** The record of a queried row. */
export function toRecord(row: KeyRow): KeyRecord {
  const key = BigInt(`0x${row.key_hex}`);
  const decoded = decodeKeyLayout(key);
  return {
    key,
    formatted: formatKey(key),
    origin: row.origin,
    purpose: row.purpose as KeyPurpose,
    site: row.site,
    agentId: row.agent_id,
    owner: row.owner,
    note: row.note,
    layout: decoded.ok ? decoded.layout : null,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    revokedBy: row.revoked_by,
    revokeReason: row.revoke_reason,
  };
}

/** `value` when it is non-empty text of at most `maxLength` characters; else StoreInputError naming `field`. */
export function requireText(field: string, value: unknown, maxLength = 200): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > maxLength) {
    throw new StoreInputError(
      field,
      `invalid ${field}: ${JSON.stringify(value)} must be non-empty text of at most ${maxLength} characters`,
    );
  }
  return value;
}

/** `value` when it names a key purpose; else StoreInputError. */
export function requirePurpose(value: unknown): KeyPurpose {
  if (typeof value !== 'string' || !(KEY_PURPOSE_NAMES as string[]).includes(value)) {
    throw new StoreInputError(
      'purpose',
      `invalid purpose: ${JSON.stringify(value)} is not one of ${KEY_PURPOSE_NAMES.join(', ')}`,
    );
  }
  return value as KeyPurpose;
}

/** `value` when it is a valid 8-byte key; else StoreInputError. */
export function requireKey(value: bigint): bigint {
  try {
    assertKey(value);
  } catch (error) {
    throw new StoreInputError('key', (error as Error).message, { cause: error });
  }
  return value;
}
