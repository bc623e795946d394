import { canonicalHash, canonicalJson, type JsonValue } from './canonical-json.js';
import type { Db } from './db.js';
import { JournalStateError, NotFoundError, StoreInputError } from './errors.js';
import { appendHistory, type HistoryEntryInput } from './history.js';

/** Where an operation stands: sent and waiting, finished with a result, or its fate unknown. */
export type OperationState = 'pending' | 'done' | 'unknown';

/** One operation of the journal, keyed by the caller's idempotency key. */
export interface OperationEntry {
  /** The caller's idempotency key. */
  readonly idempotencyKey: string;
  /** sha256 of the canonical JSON of `request`: a reused key with another request is refused. */
  readonly requestHash: string;
  /** The request as recorded at `begin`. */
  readonly request: JsonValue;
  /** Where it stands. */
  readonly state: OperationState;
  /** The result (`done`), or what is known (`unknown`); null while pending. */
  readonly result: JsonValue | null;
  /** Command id the server assigned. */
  readonly commandId: string | null;
  /** Server instance that began it (to find its pending entries after a crash). */
  readonly owner: string | null;
  /** When `begin` recorded it. */
  readonly createdAt: Date;
  /** Last state change. */
  readonly updatedAt: Date;
}

/** What `begin` found: `started` means the caller won and must run the operation; otherwise it must not. */
export type BeginOutcome =
  | { readonly kind: 'started'; readonly entry: OperationEntry }
  /** The key is known with the same request: return its result (done), or wait / report (pending, unknown). */
  | { readonly kind: 'existing'; readonly entry: OperationEntry }
  /** The key is known with a different request: a client bug; refuse (INVALID_ARGUMENT). */
  | { readonly kind: 'mismatch'; readonly entry: OperationEntry };

/** Request to `begin` an operation. */
export interface BeginRequest {
  /** The caller's idempotency key (1–256 characters). */
  readonly idempotencyKey: string;
  /** The request, as JSON (e.g. the proto message's `toJSON()`); compared on repeats. */
  readonly request: JsonValue;
  /** Command id assigned by the server. */
  readonly commandId?: string;
  /** Server instance id. */
  readonly owner?: string;
}

/** The operation journal: makes a PROUT at most once across every server sharing the database. */
export interface OperationJournal {
  /**
   * Records `pending` for a new key, atomically (INSERT … ON CONFLICT DO NOTHING): of any number of concurrent
   * begins with one key, on any servers, exactly one gets `started`. Throws StoreInputError for bad input.
   */
  begin(request: BeginRequest): Promise<BeginOutcome>;
  /**
   * Records the result: pending or unknown → done (a late result after UNKNOWN is still the truth), and appends
   * `history` (the PROUT's history entry) in the same transaction: both are written or neither.
   * Throws NotFoundError for an unknown key, JournalStateError when already done.
   */
  complete(
    idempotencyKey: string,
    result: JsonValue,
    history?: HistoryEntryInput,
  ): Promise<OperationEntry>;
  /**
   * Marks a pending operation `unknown` (its agent vanished mid-command), with what is known, and appends
   * `history` in the same transaction. Repeating it changes the entry no more (the history entry of a command
   * sent again under the key is still appended). Throws NotFoundError for an unknown key, JournalStateError when
   * already done.
   */
  markUnknown(
    idempotencyKey: string,
    result: JsonValue,
    history?: HistoryEntryInput,
  ): Promise<OperationEntry>;
  /**
   * Deletes a pending entry whose command was never sent (refused before dispatch), so the key can be used
   * again. Returns false when the key is absent or no longer pending (a sent command is never forgotten).
   */
  abandon(idempotencyKey: string): Promise<boolean>;
  /** The entry for a key, or undefined. */
  get(idempotencyKey: string): Promise<OperationEntry | undefined>;
  /** Pending entries, oldest first, optionally only one owner's or those not updated since `before`. */
  listPending(filter?: {
    readonly owner?: string;
    readonly before?: Date;
  }): Promise<OperationEntry[]>;
  /** Deletes finished (done/unknown) entries last changed before `before`; returns how many. */
  purge(before: Date): Promise<number>;
}

interface OperationRow {
  idempotency_key: string;
  request_hash: string;
  request: JsonValue;
  state: OperationState;
  result: JsonValue | null;
  command_id: string | null;
  owner: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  'idempotency_key, request_hash, request, state, result, command_id, owner, created_at, updated_at';

function toEntry(row: OperationRow): OperationEntry {
  return {
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    request: row.request,
    state: row.state,
    result: row.result,
    commandId: row.command_id,
    owner: row.owner,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * Longest journal key, in characters: a caller's key (at most 256 bytes of UTF-8) scoped by its principal's
 * name (see scopedKey in src/server/commands/keys.ts), or a fleet attempt key.
 */
export const MAX_IDEMPOTENCY_KEY_CHARS = 1024;

function requireIdempotencyKey(value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_IDEMPOTENCY_KEY_CHARS) {
    throw new StoreInputError(
      'idempotencyKey',
      `invalid idempotencyKey: ${JSON.stringify(value)} must be 1–${MAX_IDEMPOTENCY_KEY_CHARS} characters`,
    );
  }
  return value;
}

/** The journal entry of `key` as `on` (the pool or a transaction) sees it. */
async function entryOf(on: Db, key: string): Promise<OperationEntry | undefined> {
  const r = await on.query<OperationRow>(
    `SELECT ${COLUMNS} FROM operations WHERE idempotency_key = $1`,
    [key],
  );
  return r.rows[0] ? toEntry(r.rows[0]) : undefined;
}

/** Moves `key` from one of `from` to `to`; marking an UNKNOWN entry UNKNOWN again is a no-op. */
async function transitionOn(
  on: Db,
  key: string,
  result: JsonValue,
  to: 'done' | 'unknown',
  from: readonly OperationState[],
): Promise<OperationEntry> {
  requireIdempotencyKey(key);
  const json = canonicalJson(result, 'result');
  const updated = await on.query<OperationRow>(
    `UPDATE operations SET state = $2, result = $3::text::jsonb, updated_at = now()
     WHERE idempotency_key = $1 AND state = ANY($4::text[]) RETURNING ${COLUMNS}`,
    [key, to, json, from],
  );
  if (updated.rows[0]) return toEntry(updated.rows[0]);
  const existing = await entryOf(on, key);
  if (!existing)
    throw new NotFoundError(`unknown idempotency key: ${JSON.stringify(key)} has no journal entry`);
  if (to === 'unknown' && existing.state === 'unknown') return existing;
  throw new JournalStateError(
    `idempotency key ${JSON.stringify(key)} is ${existing.state}; cannot mark it ${to}`,
  );
}

/** Builds the operation journal over `db`. */
export function createOperationJournal(db: Db): OperationJournal {
  async function transition(
    key: string,
    result: JsonValue,
    to: 'done' | 'unknown',
    from: readonly OperationState[],
    history: HistoryEntryInput | undefined,
  ): Promise<OperationEntry> {
    if (history === undefined) return transitionOn(db, key, result, to, from);
    // One transaction: a crash (or a lost connection) leaves both written or neither.
    return db.transaction(async (tx) => {
      const entry = await transitionOn(tx, key, result, to, from);
      await appendHistory(tx, history);
      return entry;
    });
  }

  return {
    async begin(request) {
      const key = requireIdempotencyKey(request.idempotencyKey);
      const json = canonicalJson(request.request, 'request');
      const hash = canonicalHash(request.request);
      const inserted = await db.query<OperationRow>(
        `INSERT INTO operations (idempotency_key, request_hash, request, state, command_id, owner)
         VALUES ($1, $2, $3::text::jsonb, 'pending', $4, $5)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING ${COLUMNS}`,
        [key, hash, json, request.commandId ?? null, request.owner ?? null],
      );
      if (inserted.rows[0]) return { kind: 'started', entry: toEntry(inserted.rows[0]) };
      const existing = await entryOf(db, key);
      // Rows are only deleted by purge; racing one is an error worth seeing, not a silent retry.
      if (!existing)
        throw new JournalStateError(
          `idempotency key ${JSON.stringify(key)} vanished during begin (purged concurrently)`,
        );
      return { kind: existing.requestHash === hash ? 'existing' : 'mismatch', entry: existing };
    },
    complete: (key, result, history) =>
      transition(key, result, 'done', ['pending', 'unknown'], history),
    markUnknown: (key, result, history) => transition(key, result, 'unknown', ['pending'], history),
    async abandon(key) {
      const r = await db.query(
        `DELETE FROM operations WHERE idempotency_key = $1 AND state = 'pending'`,
        [requireIdempotencyKey(key)],
      );
      return r.rowCount === 1;
    },
    get: (key) => entryOf(db, requireIdempotencyKey(key)),
    async listPending(filter = {}) {
      const r = await db.query<OperationRow>(
        `SELECT ${COLUMNS} FROM operations
         WHERE state = 'pending' AND ($1::text IS NULL OR owner = $1) AND ($2::timestamptz IS NULL OR updated_at < $2)
         ORDER BY created_at, idempotency_key`,
        [filter.owner ?? null, filter.before ?? null],
      );
      return r.rows.map(toEntry);
    },
    async purge(before) {
      const r = await db.query(
        `DELETE FROM operations WHERE state <> 'pending' AND updated_at < $1`,
        [before],
      );
      return r.rowCount;
    },
  };
}
