import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import * as z from '../../common/zod-mini.js';
import { nonEmpty } from '../env-schema.js';
import { ROLES, type Role } from './roles.js';

/** Who made a ControlService call, as the auth middleware puts it into the call context. */
export interface Principal {
  /** Public id of the token (the part before the secret; safe to log). */
  readonly tokenId: string;
  /** Name given when the token was created (e.g. 'alice', 'backup-automation'). */
  readonly name: string;
  /** What the token may do. */
  readonly role: Role;
}

/** A stored token: only a salted hash of its secret is kept. */
export interface TokenRecord {
  /** Public id, 12 hex digits; the token string starts with `prf_<id>_`. */
  readonly id: string;
  /** Name of the holder. */
  readonly name: string;
  /** Role granted. */
  readonly role: Role;
  /** Per-token salt, hex. */
  readonly salt: string;
  /** sha256(salt ‖ secret), hex. */
  readonly hash: string;
  /** ISO time of creation. */
  readonly createdAt: string;
  /** ISO time after which the token is refused; absent = never. */
  readonly expiresAt?: string;
  /** ISO time of revocation; a revoked token is refused. */
  readonly revokedAt?: string;
}

/** Where token hashes live: the file store implements it, and any other store of hashes can. */
export interface TokenStore {
  /** The record with public id `id`, if any. */
  find(id: string): Promise<TokenRecord | undefined>;
  /** Every record, oldest first. */
  list(): Promise<TokenRecord[]>;
  /** Adds a record; throws when its id is taken. */
  add(record: TokenRecord): Promise<void>;
  /** Marks `id` revoked at `at`; returns false when there is no such token. */
  revoke(id: string, at?: Date): Promise<boolean>;
}

const TOKEN_PREFIX = 'prf';
// 32 random bytes: 256 bits of entropy, so a fast salted sha256 is enough (slow KDFs such as scrypt exist
// for guessable passwords; a per-request scrypt would also cost ~50 ms of CPU per RPC).
const SECRET_BYTES = 32;
const ID_BYTES = 6;
const TOKEN_PATTERN = /^prf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
/** A token's public id: 12 hex digits (the part after `prf_`). */
export const TOKEN_ID_PATTERN = /^[0-9a-f]{12}$/;
/** A token holder's name: 1–64 printable ASCII characters, not starting with a space. */
export const TOKEN_NAME_PATTERN = /^[\x21-\x7e][\x20-\x7e]{0,63}$/;

/** Splits `prf_<id>_<secret>`; undefined when the text is not shaped like a prfleet token. */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  const match = TOKEN_PATTERN.exec(token);
  if (match === null) return undefined;
  return { id: match[1] as string, secret: match[2] as string };
}

function hashSecret(saltHex: string, secret: string): Buffer {
  return createHash('sha256').update(Buffer.from(saltHex, 'hex')).update(secret, 'utf8').digest();
}

/** Options for {@link issueToken}. */
export interface IssueTokenOptions {
  /** Name of the holder (1–64 printable characters). */
  readonly name: string;
  /** Role to grant. */
  readonly role: Role;
  /** Lifetime; absent = no expiry. @default undefined */
  readonly expiresInMs?: number;
  /** Clock. @default new Date() */
  readonly now?: Date;
}

/**
 * Makes a new token: returns the token text (show it once, it is not stored) and the record to store.
 * Throws on a bad name or lifetime.
 */
export function issueToken(options: IssueTokenOptions): { token: string; record: TokenRecord } {
  if (!TOKEN_NAME_PATTERN.test(options.name)) {
    throw new Error(
      `invalid token name: ${JSON.stringify(options.name)} (1-64 printable ASCII characters)`,
    );
  }
  if (options.expiresInMs !== undefined && !(options.expiresInMs > 0)) {
    throw new Error(`invalid token lifetime: ${options.expiresInMs} ms (must be > 0)`);
  }
  const now = options.now ?? new Date();
  const id = randomBytes(ID_BYTES).toString('hex');
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  const salt = randomBytes(16).toString('hex');
  const record: TokenRecord = {
    id,
    name: options.name,
    role: options.role,
    salt,
    hash: hashSecret(salt, secret).toString('hex'),
    createdAt: now.toISOString(),
    ...(options.expiresInMs === undefined
      ? {}
      : { expiresAt: new Date(now.getTime() + options.expiresInMs).toISOString() }),
  };
  return { token: `${TOKEN_PREFIX}_${id}_${secret}`, record };
}

/**
 * Longest token lifetime CreateToken and `prfleet-tokens create` accept (10 years): a typo in a unit should not
 * mint an eternal token silently.
 */
export const MAX_TOKEN_LIFETIME_DAYS = 3650;

/** Issues a token and adds it to `store`; returns the token text (the only time it is visible) and record. */
export async function createToken(
  store: TokenStore,
  options: IssueTokenOptions,
): Promise<{ token: string; record: TokenRecord }> {
  const issued = issueToken(options);
  await store.add(issued.record);
  return issued;
}

/**
 * Checks a presented token against `store`: format, existence, hash (constant-time), revocation, expiry.
 * Returns the principal, or undefined for any failure (callers answer UNAUTHENTICATED without saying which).
 */
export async function verifyToken(
  store: TokenStore,
  token: string,
  now = new Date(),
): Promise<Principal | undefined> {
  const parsed = parseToken(token);
  if (parsed === undefined) return undefined;
  const record = await store.find(parsed.id);
  if (record === undefined) return undefined;
  const expected = Buffer.from(record.hash, 'hex');
  const actual = hashSecret(record.salt, parsed.secret);
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined;
  if (record.revokedAt !== undefined) return undefined;
  if (record.expiresAt !== undefined && now.getTime() >= Date.parse(record.expiresAt))
    return undefined;
  return { tokenId: record.id, name: record.name, role: record.role };
}

/** An in-memory store (tests; a server given tokens by other means). */
export function createMemoryTokenStore(records: readonly TokenRecord[] = []): TokenStore {
  const byId = new Map(records.map((r) => [r.id, r]));
  return {
    async find(id) {
      return byId.get(id);
    },
    async list() {
      return [...byId.values()];
    },
    async add(record) {
      if (byId.has(record.id)) throw new Error(`token id ${record.id} already exists`);
      byId.set(record.id, record);
    },
    async revoke(id, at = new Date()) {
      const record = byId.get(id);
      if (record === undefined) return false;
      byId.set(id, { ...record, revokedAt: at.toISOString() });
      return true;
    },
  };
}

const TokenRecordSchema = z.object({
  id: z.string().check(z.regex(TOKEN_ID_PATTERN)),
  name: nonEmpty(),
  role: z.enum(ROLES as [Role, ...Role[]]),
  salt: z.string().check(z.regex(/^[0-9a-f]+$/)),
  hash: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
  createdAt: z.string(),
  expiresAt: z.optional(z.string()),
  revokedAt: z.optional(z.string()),
});
const TokenFileSchema = z.object({ version: z.literal(1), tokens: z.array(TokenRecordSchema) });

function toRecord(parsed: z.infer<typeof TokenRecordSchema>): TokenRecord {
  const { expiresAt, revokedAt, ...rest } = parsed;
  return {
    ...rest,
    ...(expiresAt === undefined ? {} : { expiresAt }),
    ...(revokedAt === undefined ? {} : { revokedAt }),
  };
}

/**
 * A JSON file of token hashes (`{ "version": 1, "tokens": [...] }`, mode 0600). Reads are re-done when the
 * file changes (tokens created by `prfleet-tokens` are seen by a running server without a restart); writes
 * replace the file atomically. A missing file is an empty store; a malformed one is an error naming the file.
 * Writes of one process take turns (the server's token RPCs may run together), each on a fresh read and its own
 * temp file; a second process writing at the same moment (the token tool beside a server) is not locked out.
 */
export function createFileTokenStore(path: string): TokenStore {
  let cache: { key: string; records: TokenRecord[] } | undefined;
  let writes: Promise<unknown> = Promise.resolve();
  let temps = 0;
  /** Runs `change` after every write begun before it (a failed one included). */
  const inTurn = <T>(change: () => Promise<T>): Promise<T> => {
    const turn = writes.then(change, change);
    writes = turn.catch(() => undefined);
    return turn;
  };

  async function load(): Promise<TokenRecord[]> {
    let key: string;
    try {
      const s = await stat(path);
      key = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    if (cache?.key === key) return cache.records;
    const text = await readFile(path, 'utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(`token file ${path} is not valid JSON`, { cause: error });
    }
    const parsed = TokenFileSchema.safeParse(json);
    if (!parsed.success)
      throw new Error(`token file ${path} is malformed\n${z.prettifyError(parsed.error)}`);
    const records = parsed.data.tokens.map(toRecord);
    cache = { key, records };
    return records;
  }

  async function save(records: TokenRecord[]): Promise<void> {
    temps += 1;
    const temp = `${path}.${process.pid}.${temps}.tmp`;
    await writeFile(temp, `${JSON.stringify({ version: 1, tokens: records }, null, 2)}\n`, {
      mode: 0o600,
    });
    await rename(temp, path);
    cache = undefined;
  }

  return {
    async find(id) {
      return (await load()).find((r) => r.id === id);
    },
    async list() {
      return [...(await load())];
    },
    add(record) {
      return inTurn(async () => {
        const records = await load();
        if (records.some((r) => r.id === record.id))
          throw new Error(`token id ${record.id} already exists`);
        await save([...records, record]);
      });
    },
    revoke(id, at = new Date()) {
      return inTurn(async () => {
        const records = await load();
        const index = records.findIndex((r) => r.id === id);
        if (index < 0) return false;
        const record = records[index] as TokenRecord;
        if (record.revokedAt !== undefined) return true; // revoked already: keep the first time
        const next = [...records];
        next[index] = { ...record, revokedAt: at.toISOString() };
        await save(next);
        return true;
      });
    },
  };
}
