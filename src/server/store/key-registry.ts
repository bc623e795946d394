import type { ForeignKeyReading, KeyPurpose, PrfleetKeyLayout } from '../../common/key-layout.js';
import type { Db } from './db.js';
import { adoptKey, allocateKey } from './key-allocation.js';
import { decodeKey, findActiveKey, getKey, listKeys, listSites, revokeKey } from './key-queries.js';

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

/**
 * Builds the key registry over `db`: allocation and adoption (key-allocation.ts), lookups and revocation
 * (key-queries.ts), over the rows and input checks of key-rows.ts.
 */
export function createKeyRegistry(db: Db): KeyRegistry {
  return {
    allocate: (request) => allocateKey(db, request),
    adopt: (request) => adoptKey(db, request),
    get: (key) => getKey(db, key),
    list: (filter) => listKeys(db, filter),
    findActive: (agentId, purpose) => findActiveKey(db, agentId, purpose),
    revoke: (key, options) => revokeKey(db, key, options),
    sites: () => listSites(db),
    decodeKey: (key) => decodeKey(db, key),
  };
}
