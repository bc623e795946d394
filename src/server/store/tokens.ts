import type { Role } from '../auth/roles.js';
import type { TokenRecord, TokenStore } from '../auth/tokens.js';
import { isUniqueViolation, type Db } from './db.js';

/** Options for {@link createDbTokenStore}. */
export interface DbTokenStoreOptions {
  /**
   * How long a token found by `find` is served from memory before it is read again. A revocation made
   * elsewhere (the token tool, another server instance) takes effect within this time. 0 = read every call.
   * @default 1000
   */
  readonly cacheMs?: number;
  /** Clock for the cache. @default Date.now */
  readonly now?: () => number;
}

interface TokenRow {
  id: string;
  name: string;
  role: Role;
  salt: string;
  hash: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
}

const COLUMNS = 'id, name, role, salt, hash, created_at, expires_at, revoked_at';

function toRecord(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    salt: row.salt,
    hash: row.hash,
    createdAt: row.created_at.toISOString(),
    ...(row.expires_at === null ? {} : { expiresAt: row.expires_at.toISOString() }),
    ...(row.revoked_at === null ? {} : { revokedAt: row.revoked_at.toISOString() }),
  };
}

/**
 * Bearer tokens in the durable store's `auth_tokens` table (migration 2): the same records, salted hashes and
 * roles as the file store, shared by every server instance on one database. Rows are revoked, never deleted.
 * `find` results are cached for `cacheMs` (an RPC then costs no query); tokens not found are not cached, so a
 * new token works at once. `revoke` keeps the first revocation time.
 */
export function createDbTokenStore(db: Db, options: DbTokenStoreOptions = {}): TokenStore {
  const cacheMs = options.cacheMs ?? 1000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { record: TokenRecord; until: number }>();

  return {
    async find(id) {
      const cached = cache.get(id);
      if (cached !== undefined && cached.until > now()) return cached.record;
      const r = await db.query<TokenRow>(`SELECT ${COLUMNS} FROM auth_tokens WHERE id = $1`, [id]);
      const row = r.rows[0];
      if (row === undefined) {
        cache.delete(id);
        return undefined;
      }
      const record = toRecord(row);
      if (cacheMs > 0) {
        // Bounded: ids come from callers, but only ids that exist are cached.
        if (cache.size >= 10_000) cache.clear();
        cache.set(id, { record, until: now() + cacheMs });
      }
      return record;
    },
    async list() {
      const r = await db.query<TokenRow>(
        `SELECT ${COLUMNS} FROM auth_tokens ORDER BY created_at, id`,
      );
      return r.rows.map(toRecord);
    },
    async add(record) {
      try {
        await db.query(
          `INSERT INTO auth_tokens (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [
            record.id,
            record.name,
            record.role,
            record.salt,
            record.hash,
            new Date(record.createdAt),
            record.expiresAt === undefined ? null : new Date(record.expiresAt),
            record.revokedAt === undefined ? null : new Date(record.revokedAt),
          ],
        );
      } catch (error) {
        if (isUniqueViolation(error))
          throw new Error(`token id ${record.id} already exists`, { cause: error });
        throw error;
      }
    },
    async revoke(id, at = new Date()) {
      cache.delete(id);
      const r = await db.query<{ id: string }>(
        'UPDATE auth_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING id',
        [id, at],
      );
      cache.delete(id); // a find that read the row before the UPDATE may have cached it meanwhile
      return r.rows.length > 0;
    },
  };
}
