import {
  KEY_PURPOSES,
  KEY_PURPOSE_NAMES,
  MAX_HOST_ID,
  MAX_SERIAL,
  MAX_SITE_CODE,
  assertKey,
  decodeKeyLayout,
  encodeKey,
  formatKey,
  keyToHex,
  readForeignKey,
  type ForeignKeyReading,
  type KeyPurpose,
  type PrfleetKeyLayout,
} from '../../common/key-layout.js';
import type { Db } from './db.js';
import { KeySpaceExhaustedError, NotFoundError, StoreInputError } from './errors.js';

/** A key known to the registry. Absent values are null (they are columns). */
export interface KeyRecord {
  /** The key. */
  readonly key: bigint;
  /** `0x` + 16 hex digits. */
  readonly formatted: string;
  /** `allocated` by this registry, or `adopted`: a key already in the field, recorded with its owner. */
  readonly origin: 'allocated' | 'adopted';
  /** What it is for. */
  readonly purpose: KeyPurpose;
  /** Site name. */
  readonly site: string | null;
  /** Agent (host) it was issued to. */
  readonly agentId: string | null;
  /** Person, team or application answerable for it. */
  readonly owner: string;
  /** Free text. */
  readonly note: string | null;
  /** The layout fields, when the key has the prfleet layout. */
  readonly layout: PrfleetKeyLayout | null;
  /** When it was allocated or adopted. */
  readonly createdAt: Date;
  /** When it was revoked; null while valid. */
  readonly revokedAt: Date | null;
  /** Who revoked it. */
  readonly revokedBy: string | null;
  /** Why it was revoked. */
  readonly revokeReason: string | null;
}

/** What `decodeKey` says about any 8-byte key met on a device. */
export type KeyReading =
  | {
      readonly kind: 'registry';
      readonly key: bigint;
      readonly formatted: string;
      readonly record: KeyRecord;
      readonly summary: string;
    }
  | (ForeignKeyReading & { readonly key: bigint; readonly formatted: string });

/** Request to allocate a new key. */
export interface AllocateKeyRequest {
  /** Site name (a code is assigned on first use). */
  readonly site: string;
  /** Agent (host) the key is for. */
  readonly agentId: string;
  /** What the key is for. */
  readonly purpose: KeyPurpose;
  /** Who answers for it. */
  readonly owner: string;
  /** Free text. */
  readonly note?: string;
}

/** Request to record a key that already exists in the field. */
export interface AdoptKeyRequest {
  /** The key as found on devices. */
  readonly key: bigint;
  /** What it is used for. */
  readonly purpose: KeyPurpose;
  /** Who answers for it. */
  readonly owner: string;
  /** Agent that uses it, when known. */
  readonly agentId?: string;
  /** Site, when known. */
  readonly site?: string;
  /** Free text. */
  readonly note?: string;
}

/** Filter for `list`. */
export interface ListKeysFilter {
  /** Only keys of this agent. */
  readonly agentId?: string;
  /** Only keys of this site. */
  readonly site?: string;
  /** Only keys with this purpose. */
  readonly purpose?: KeyPurpose;
  /** Include revoked keys. @default false */
  readonly includeRevoked?: boolean;
}

/** A site and its code. */
export interface SiteRecord {
  /** Site name. */
  readonly name: string;
  /** Code in bytes 2–3 of its keys. */
  readonly code: number;
}

/** The fleet's reservation keys: allocation, ownership, revocation, and reading keys met on devices. */
export interface KeyRegistry {
  /**
   * Allocates a fresh prfleet key for (site, agent, purpose); never returns a key handed out before, revoked
   * ones included. Serialised fleet-wide by an advisory lock; the unique constraints back it up. Throws
   * StoreInputError for bad input and KeySpaceExhaustedError when no site code or host id is left.
   */
  allocate(request: AllocateKeyRequest): Promise<KeyRecord>;
  /** Records an existing key (any layout, not 0) with its owner. Throws StoreInputError if already known. */
  adopt(request: AdoptKeyRequest): Promise<KeyRecord>;
  /** The record of `key`, or undefined. */
  get(key: bigint): Promise<KeyRecord | undefined>;
  /** Keys, oldest first. */
  list(filter?: ListKeysFilter): Promise<KeyRecord[]>;
  /** The newest valid key of (agent, purpose), or undefined. */
  findActive(agentId: string, purpose: KeyPurpose): Promise<KeyRecord | undefined>;
  /**
   * Marks `key` revoked (it stays recorded, so it is never reissued). Revoking a revoked key changes nothing
   * and returns it. Throws NotFoundError for an unknown key.
   */
  revoke(
    key: bigint,
    options: { readonly by: string; readonly reason?: string },
  ): Promise<KeyRecord>;
  /** Sites with their codes. */
  sites(): Promise<SiteRecord[]>;
  /** Reads any key: the registry's record when it has one, else `readForeignKey` (see docs/keys.md). */
  decodeKey(key: bigint): Promise<KeyReading>;
}

interface KeyRow {
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

const KEY_COLUMNS =
  'key_hex, origin, purpose, site, agent_id, owner, note, created_at, revoked_at, revoked_by, revoke_reason';

function toRecord(row: KeyRow): KeyRecord {
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

function requireText(field: string, value: unknown, maxLength = 200): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > maxLength) {
    throw new StoreInputError(
      field,
      `invalid ${field}: ${JSON.stringify(value)} must be non-empty text of at most ${maxLength} characters`,
    );
  }
  return value;
}

function requirePurpose(value: unknown): KeyPurpose {
  if (typeof value !== 'string' || !(KEY_PURPOSE_NAMES as string[]).includes(value)) {
    throw new StoreInputError(
      'purpose',
      `invalid purpose: ${JSON.stringify(value)} is not one of ${KEY_PURPOSE_NAMES.join(', ')}`,
    );
  }
  return value as KeyPurpose;
}

function requireKey(value: bigint): bigint {
  try {
    assertKey(value);
  } catch (error) {
    throw new StoreInputError('key', (error as Error).message, { cause: error });
  }
  return value;
}

// Lowest free id in 1..max, or NULL when all are taken. The gap search finds ids freed by deleted rows too.
const FREE_SITE_CODE_SQL = `SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM key_sites WHERE code = 1) THEN 1
  ELSE (SELECT min(a.code) + 1 FROM key_sites a
        WHERE a.code < ${MAX_SITE_CODE} AND NOT EXISTS (SELECT 1 FROM key_sites b WHERE b.code = a.code + 1))
END AS free`;
const FREE_HOST_ID_SQL = `SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM key_hosts WHERE site_code = $1 AND host_id = 1) THEN 1
  ELSE (SELECT min(a.host_id) + 1 FROM key_hosts a
        WHERE a.site_code = $1 AND a.host_id < ${MAX_HOST_ID}
          AND NOT EXISTS (SELECT 1 FROM key_hosts b WHERE b.site_code = $1 AND b.host_id = a.host_id + 1))
END AS free`;

const ALLOCATION_LOCK = 'prfleet.keys.allocate';

/** Builds the key registry over `db`. */
export function createKeyRegistry(db: Db): KeyRegistry {
  async function siteCode(tx: Db, name: string): Promise<number> {
    const found = await tx.query<{ code: number }>('SELECT code FROM key_sites WHERE name = $1', [
      name,
    ]);
    if (found.rows[0]) return found.rows[0].code;
    const free = await tx.query<{ free: number | null }>(FREE_SITE_CODE_SQL);
    const code = free.rows[0]?.free ?? null;
    if (code === null) {
      throw new KeySpaceExhaustedError(
        `no site code left: all ${MAX_SITE_CODE} site codes are assigned; site ${JSON.stringify(name)} cannot be added`,
      );
    }
    await tx.query('INSERT INTO key_sites (code, name) VALUES ($1, $2)', [code, name]);
    return code;
  }

  async function newHostId(
    tx: Db,
    site: number,
    siteName: string,
    agentId: string,
  ): Promise<number> {
    const free = await tx.query<{ free: number | null }>(FREE_HOST_ID_SQL, [site]);
    const hostId = free.rows[0]?.free ?? null;
    if (hostId === null) {
      throw new KeySpaceExhaustedError(
        `no host id left in site ${JSON.stringify(siteName)} (code ${site}): all ${MAX_HOST_ID} are assigned; put agent ${JSON.stringify(agentId)} in another site`,
      );
    }
    await tx.query('INSERT INTO key_hosts (site_code, host_id, agent_id) VALUES ($1, $2, $3)', [
      site,
      hostId,
      agentId,
    ]);
    return hostId;
  }

  async function freeSerials(
    tx: Db,
    site: number,
    hostId: number,
    purposeCode: number,
  ): Promise<number[]> {
    const r = await tx.query<{ serial: number }>(
      `SELECT s AS serial FROM generate_series(0, ${MAX_SERIAL}) AS s
       WHERE NOT EXISTS (SELECT 1 FROM reservation_keys k
                         WHERE k.site_code = $1 AND k.host_id = $2 AND k.purpose_code = $3 AND k.serial = s)
       ORDER BY s`,
      [site, hostId, purposeCode],
    );
    return r.rows.map((row) => row.serial);
  }

  const registry: KeyRegistry = {
    async allocate(request) {
      const site = requireText('site', request.site);
      const agentId = requireText('agentId', request.agentId);
      const purpose = requirePurpose(request.purpose);
      const owner = requireText('owner', request.owner);
      const note = request.note === undefined ? null : requireText('note', request.note, 2000);
      const purposeCode = KEY_PURPOSES[purpose];
      return db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ALLOCATION_LOCK]);
        const code = await siteCode(tx, site);
        const hosts = await tx.query<{ host_id: number }>(
          'SELECT host_id FROM key_hosts WHERE site_code = $1 AND agent_id = $2 ORDER BY host_id',
          [code, agentId],
        );
        // Try the agent's host ids in order; when every serial of this purpose is used, give it a fresh one.
        const hostIds = hosts.rows.map((r) => r.host_id);
        for (let i = 0; ; i++) {
          const hostId = hostIds[i] ?? (await newHostId(tx, code, site, agentId));
          for (const serial of await freeSerials(tx, code, hostId, purposeCode)) {
            const key = encodeKey({ siteCode: code, hostId, purpose, serial });
            // ON CONFLICT: the unique key refuses a collision the serial search missed (a row written outside
            // this code); the next serial is tried instead.
            const inserted = await tx.query<KeyRow>(
              `INSERT INTO reservation_keys
                 (key_hex, origin, site_code, host_id, purpose_code, serial, purpose, site, agent_id, owner, note)
               VALUES ($1, 'allocated', $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT DO NOTHING
               RETURNING ${KEY_COLUMNS}`,
              [
                keyToHex(key),
                code,
                hostId,
                purposeCode,
                serial,
                purpose,
                site,
                agentId,
                owner,
                note,
              ],
            );
            if (inserted.rows[0]) return toRecord(inserted.rows[0]);
          }
        }
      });
    },

    async adopt(request) {
      const key = requireKey(request.key);
      if (key === 0n)
        throw new StoreInputError(
          'key',
          'invalid key: 0x0000000000000000 means "no key" and cannot be owned',
        );
      const purpose = requirePurpose(request.purpose);
      const owner = requireText('owner', request.owner);
      const agentId =
        request.agentId === undefined ? null : requireText('agentId', request.agentId);
      const site = request.site === undefined ? null : requireText('site', request.site);
      const note = request.note === undefined ? null : requireText('note', request.note, 2000);
      const decoded = decodeKeyLayout(key);
      // A prfleet-layout key keeps its numbers, so allocation skips its serial and cannot reissue it.
      const l = decoded.ok ? decoded.layout : undefined;
      return db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ALLOCATION_LOCK]);
        const inserted = await tx.query<KeyRow>(
          `INSERT INTO reservation_keys
             (key_hex, origin, site_code, host_id, purpose_code, serial, purpose, site, agent_id, owner, note)
           VALUES ($1, 'adopted', $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT DO NOTHING
           RETURNING ${KEY_COLUMNS}`,
          [
            keyToHex(key),
            l?.siteCode ?? null,
            l?.hostId ?? null,
            l?.purposeCode ?? null,
            l?.serial ?? null,
            purpose,
            site,
            agentId,
            owner,
            note,
          ],
        );
        if (!inserted.rows[0])
          throw new StoreInputError(
            'key',
            `invalid key: ${formatKey(key)} is already in the registry`,
          );
        return toRecord(inserted.rows[0]);
      });
    },

    async get(key) {
      const r = await db.query<KeyRow>(
        `SELECT ${KEY_COLUMNS} FROM reservation_keys WHERE key_hex = $1`,
        [keyToHex(requireKey(key))],
      );
      return r.rows[0] ? toRecord(r.rows[0]) : undefined;
    },

    async list(filter = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      const add = (clause: string, value: unknown) => {
        params.push(value);
        where.push(clause.replace('?', `$${params.length}`));
      };
      if (filter.agentId !== undefined) add('agent_id = ?', filter.agentId);
      if (filter.site !== undefined) add('site = ?', filter.site);
      if (filter.purpose !== undefined) add('purpose = ?', requirePurpose(filter.purpose));
      if (!filter.includeRevoked) where.push('revoked_at IS NULL');
      const r = await db.query<KeyRow>(
        `SELECT ${KEY_COLUMNS} FROM reservation_keys ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, key_hex`,
        params,
      );
      return r.rows.map(toRecord);
    },

    async findActive(agentId, purpose) {
      const r = await db.query<KeyRow>(
        `SELECT ${KEY_COLUMNS} FROM reservation_keys WHERE agent_id = $1 AND purpose = $2 AND revoked_at IS NULL
         ORDER BY created_at DESC, key_hex DESC LIMIT 1`,
        [agentId, requirePurpose(purpose)],
      );
      return r.rows[0] ? toRecord(r.rows[0]) : undefined;
    },

    async revoke(key, options) {
      const by = requireText('by', options.by);
      const reason =
        options.reason === undefined ? null : requireText('reason', options.reason, 2000);
      const hex = keyToHex(requireKey(key));
      const updated = await db.query<KeyRow>(
        `UPDATE reservation_keys SET revoked_at = now(), revoked_by = $2, revoke_reason = $3
         WHERE key_hex = $1 AND revoked_at IS NULL RETURNING ${KEY_COLUMNS}`,
        [hex, by, reason],
      );
      if (updated.rows[0]) return toRecord(updated.rows[0]);
      const existing = await registry.get(key);
      if (!existing)
        throw new NotFoundError(`unknown key: ${formatKey(key)} is not in the registry`);
      return existing;
    },

    async sites() {
      const r = await db.query<{ name: string; code: number }>(
        'SELECT name, code FROM key_sites ORDER BY code',
      );
      return r.rows.map((row) => ({ name: row.name, code: row.code }));
    },

    async decodeKey(key) {
      const record = await registry.get(key);
      const formatted = formatKey(key);
      if (record) {
        const state = record.revokedAt ? `revoked ${record.revokedAt.toISOString()}` : 'valid';
        return {
          kind: 'registry',
          key,
          formatted,
          record,
          summary: `${record.purpose} key of ${record.agentId ?? 'unknown agent'}${record.site ? ` at ${record.site}` : ''}, owner ${record.owner}, ${record.origin}, ${state}`,
        };
      }
      return { ...readForeignKey(key), key, formatted };
    },
  };
  return registry;
}
