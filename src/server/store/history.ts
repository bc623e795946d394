import { createHash } from 'node:crypto';
import { assertKey, keyToHex } from '../../common/key-layout.js';
import { canonicalJson } from './canonical-json.js';
import type { Db } from './db.js';
import { StoreInputError } from './errors.js';
import { GENESIS_HASH } from './migrations.js';

/** One PROUT as sent, to be appended to the history. */
export interface HistoryEntryInput {
  /** When it was sent. @default now */
  readonly at?: Date;
  /** Who asked for it (user, token subject, or `plan:<id>`). */
  readonly actor: string;
  /** Agent that ran it. */
  readonly agentId: string;
  /** Path (device node) on that agent. */
  readonly path: string;
  /** Logical unit. */
  readonly luId: string;
  /** Service action, e.g. `register` or the proto enum name. */
  readonly action: string;
  /** RESERVATION KEY sent. */
  readonly reservationKey: bigint;
  /** SERVICE ACTION RESERVATION KEY sent. @default 0n */
  readonly serviceActionKey?: bigint;
  /** Reservation TYPE code sent, when the action has one. */
  readonly prType?: number;
  /** What became of it, e.g. `OUTCOME_GOOD`, `OUTCOME_RESERVATION_CONFLICT`, `OUTCOME_UNKNOWN`. */
  readonly outcome: string;
  /** SAM status byte, when the device answered. */
  readonly status?: number;
  /** Sense bytes as hex, when the device returned some. */
  readonly sense?: string;
  /** Command id. */
  readonly commandId?: string;
  /** Idempotency key of the request. */
  readonly idempotencyKey?: string;
  /** Why (ProutOptions.reason). */
  readonly reason?: string;
}

/** A history entry as stored: its position and its link in the hash chain. */
export interface HistoryEntry {
  /** Position, 1, 2, 3, … */
  readonly seq: number;
  /** When it was sent. */
  readonly at: Date;
  /** Who asked for it. */
  readonly actor: string;
  /** Agent that ran it. */
  readonly agentId: string;
  /** Path on that agent. */
  readonly path: string;
  /** Logical unit. */
  readonly luId: string;
  /** Service action. */
  readonly action: string;
  /** RESERVATION KEY sent. */
  readonly reservationKey: bigint;
  /** SERVICE ACTION RESERVATION KEY sent. */
  readonly serviceActionKey: bigint;
  /** TYPE sent, or null. */
  readonly prType: number | null;
  /** What became of it. */
  readonly outcome: string;
  /** SAM status byte, or null. */
  readonly status: number | null;
  /** Sense bytes (hex), or null. */
  readonly sense: string | null;
  /** Command id, or null. */
  readonly commandId: string | null;
  /** Idempotency key, or null. */
  readonly idempotencyKey: string | null;
  /** Reason, or null. */
  readonly reason: string | null;
  /** Hash of the previous entry (64 zeros for the first). */
  readonly prevHash: string;
  /** sha256 over the canonical JSON of this entry's content and `prevHash`. */
  readonly hash: string;
}

/** Where the chain broke, and how it looks. */
export type HistoryProblem =
  /** The entry's content no longer matches its own hash. */
  | 'edited'
  /** The entry's predecessor is not in the history. */
  | 'removed'
  /** The entry's predecessor exists, but elsewhere: entries were moved. */
  | 'reordered'
  /** The history ends before the recorded head: entries at the end were removed. */
  | 'truncated';

/** The verdict of `verify`. */
export type HistoryVerification =
  | { readonly ok: true; readonly count: number; readonly headHash: string }
  | {
      readonly ok: false;
      readonly problem: HistoryProblem;
      /** The first entry found at fault (for `truncated`, the last entry present). */
      readonly seq: number;
      /** Entries checked before the fault. */
      readonly checked: number;
      /** One sentence for people. */
      readonly message: string;
    };

/** Filter for `list`. */
export interface HistoryFilter {
  /** Only this logical unit. */
  readonly luId?: string;
  /** Only this agent. */
  readonly agentId?: string;
  /** Only entries after this position (paging). */
  readonly afterSeq?: number;
  /** At most this many. @default 1000 */
  readonly limit?: number;
  /** Newest first (the latest entries), instead of in order. @default false */
  readonly newestFirst?: boolean;
}

/** The append-only, hash-chained history of every PROUT sent. */
export interface PRoutHistory {
  /** Appends one entry (serialised across servers by locking the chain head) and returns it. */
  append(entry: HistoryEntryInput): Promise<HistoryEntry>;
  /**
   * Appends `entry` unless an entry with its idempotency key is in the chain (checked under the head's lock, so
   * two servers closing the same gap append it once); undefined when it was there.
   */
  appendMissing(entry: HistoryEntryInput): Promise<HistoryEntry | undefined>;
  /** Entries in order. */
  list(filter?: HistoryFilter): Promise<HistoryEntry[]>;
  /** Checks the whole chain: every hash, every link, and the head. Reads in pages. */
  verify(): Promise<HistoryVerification>;
  /**
   * Journal entries settled as sent (done or unknown) that have no history entry, oldest first: a gap the
   * one-transaction completion prevents, left by older servers or a completion that could not be written.
   */
  unrecorded(limit?: number): Promise<UnrecordedOperation[]>;
}

/** A journal entry whose PROUT has no history entry (see PRoutHistory.unrecorded). */
export interface UnrecordedOperation {
  /** The journal key. */
  readonly journalKey: string;
  /** The idempotency key its history entry would carry. */
  readonly idempotencyKey: string;
  /** The journaled request and result (to rebuild the entry). */
  readonly request: unknown;
  readonly result: unknown;
  readonly state: 'done' | 'unknown';
  readonly createdAt: Date;
}

/**
 * ControlService entries carry the command as sent in request.record (the history key is its raw idempotency
 * key); fleet attempts are `fleet-step` requests whose result says whether it reached the device.
 */
const UNRECORDED_SQL = `
SELECT o.idempotency_key AS journal_key,
       COALESCE(o.request->'record'->'command'->>'idempotencyKey', o.idempotency_key) AS idempotency_key,
       o.request, o.result, o.state, o.created_at
FROM operations o
WHERE o.state IN ('done', 'unknown')
  AND (o.request ? 'record'
       OR (o.request->>'kind' = 'fleet-step' AND COALESCE(o.result->>'sent', 'false') = 'true'))
  AND NOT EXISTS (
    SELECT 1 FROM history h
    WHERE h.idempotency_key = COALESCE(o.request->'record'->'command'->>'idempotencyKey', o.idempotency_key))
ORDER BY o.created_at, o.idempotency_key
LIMIT $1`;

interface HistoryRow {
  seq: number;
  at: Date;
  actor: string;
  agent_id: string;
  path: string;
  lu_id: string;
  action: string;
  reservation_key: string;
  service_action_key: string;
  pr_type: number | null;
  outcome: string;
  status: number | null;
  sense: string | null;
  command_id: string | null;
  idempotency_key: string | null;
  reason: string | null;
  prev_hash: string;
  hash: string;
}

const COLUMNS =
  'seq, at, actor, agent_id, path, lu_id, action, reservation_key, service_action_key, pr_type, outcome, status, sense, command_id, idempotency_key, reason, prev_hash, hash';

/**
 * The hashed content of an entry: everything but `seq` and `hash`. Position is carried by the `prevHash` link,
 * so moving an entry breaks a link instead of changing its own hash, which lets verify tell the two apart.
 */
function hashedContent(row: Omit<HistoryRow, 'seq' | 'hash'>): Record<string, unknown> {
  return {
    at: row.at.toISOString(),
    actor: row.actor,
    agentId: row.agent_id,
    path: row.path,
    luId: row.lu_id,
    action: row.action,
    reservationKey: row.reservation_key,
    serviceActionKey: row.service_action_key,
    prType: row.pr_type,
    outcome: row.outcome,
    status: row.status,
    sense: row.sense,
    commandId: row.command_id,
    idempotencyKey: row.idempotency_key,
    reason: row.reason,
    prevHash: row.prev_hash,
  };
}

/** sha256 (hex) of an entry's canonical JSON: what `hash` must equal. */
export function entryHash(row: Omit<HistoryRow, 'seq' | 'hash'>): string {
  return createHash('sha256')
    .update(canonicalJson(hashedContent(row)))
    .digest('hex');
}

function toEntry(row: HistoryRow): HistoryEntry {
  return {
    seq: row.seq,
    at: row.at,
    actor: row.actor,
    agentId: row.agent_id,
    path: row.path,
    luId: row.lu_id,
    action: row.action,
    reservationKey: BigInt(`0x${row.reservation_key}`),
    serviceActionKey: BigInt(`0x${row.service_action_key}`),
    prType: row.pr_type,
    outcome: row.outcome,
    status: row.status,
    sense: row.sense,
    commandId: row.command_id,
    idempotencyKey: row.idempotency_key,
    reason: row.reason,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

function text(field: string, value: unknown, maxLength = 500): string {
  if (typeof value !== 'string' || value === '' || value.length > maxLength) {
    throw new StoreInputError(
      field,
      `invalid ${field}: ${JSON.stringify(value)} must be 1–${maxLength} characters`,
    );
  }
  return value;
}

function optionalText(field: string, value: string | undefined, maxLength = 2000): string | null {
  return value === undefined ? null : text(field, value, maxLength);
}

function optionalByte(field: string, value: number | undefined): number | null {
  if (value === undefined) return null;
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new StoreInputError(field, `invalid ${field}: ${value} is not a byte`);
  }
  return value;
}

function key(field: string, value: bigint): string {
  try {
    assertKey(value, field);
  } catch (error) {
    throw new StoreInputError(field, (error as Error).message, { cause: error });
  }
  return keyToHex(value);
}

/** Longest device path kept: the request limit of `path` (docs/api-limits.md), so every path a client names fits. */
export const MAX_HISTORY_PATH_LENGTH = 4096;

/**
 * Throws StoreInputError when `input` could not be appended (a field too long or malformed): checked before a
 * PROUT is sent, so none runs whose history entry the store would refuse.
 */
export function checkHistoryEntry(input: HistoryEntryInput): void {
  normalise(input);
}

/** Validates `input` and builds the row content (without seq, links and hash). Throws StoreInputError. */
function normalise(input: HistoryEntryInput): Omit<HistoryRow, 'seq' | 'prev_hash' | 'hash'> {
  const at = input.at ?? new Date();
  if (!(at instanceof Date) || Number.isNaN(at.getTime()))
    throw new StoreInputError('at', `invalid at: ${String(input.at)}`);
  if (input.sense !== undefined && !/^([0-9a-f]{2})*$/.test(input.sense)) {
    throw new StoreInputError(
      'sense',
      `invalid sense: ${JSON.stringify(input.sense)} is not lower-case hex bytes`,
    );
  }
  return {
    at: new Date(at.getTime()),
    actor: text('actor', input.actor),
    agent_id: text('agentId', input.agentId),
    path: text('path', input.path, MAX_HISTORY_PATH_LENGTH),
    lu_id: text('luId', input.luId),
    action: text('action', input.action, 100),
    reservation_key: key('reservationKey', input.reservationKey),
    service_action_key: key('serviceActionKey', input.serviceActionKey ?? 0n),
    pr_type: optionalByte('prType', input.prType),
    outcome: text('outcome', input.outcome, 100),
    status: optionalByte('status', input.status),
    sense: input.sense ?? null,
    command_id: optionalText('commandId', input.commandId, 200),
    idempotency_key: optionalText('idempotencyKey', input.idempotencyKey, 256),
    reason: optionalText('reason', input.reason),
  };
}

/**
 * Appends one entry to the chain in a transaction: lock the head row (servers queue here), link to its hash,
 * insert, move the head. Throws StoreInputError for bad input (nothing is written).
 */
export async function appendHistory(db: Db, input: HistoryEntryInput): Promise<HistoryEntry>;
export async function appendHistory(
  db: Db,
  input: HistoryEntryInput,
  unlessRecorded: true,
): Promise<HistoryEntry | undefined>;
export async function appendHistory(
  db: Db,
  input: HistoryEntryInput,
  unlessRecorded = false,
): Promise<HistoryEntry | undefined> {
  const content = normalise(input);
  return db.transaction(async (tx) => {
    const head = await tx.query<{ seq: number; hash: string }>(
      'SELECT seq, hash FROM history_head WHERE id = 1 FOR UPDATE',
    );
    const tip = head.rows[0];
    if (!tip) throw new Error('history_head row missing: the schema was not migrated');
    if (unlessRecorded && content.idempotency_key !== null) {
      const there = await tx.query('SELECT 1 FROM history WHERE idempotency_key = $1 LIMIT 1', [
        content.idempotency_key,
      ]);
      if (there.rows.length > 0) return undefined;
    }
    const row: HistoryRow = { ...content, seq: tip.seq + 1, prev_hash: tip.hash, hash: '' };
    row.hash = entryHash(row);
    await tx.query(
      `INSERT INTO history (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
      [
        row.seq,
        row.at,
        row.actor,
        row.agent_id,
        row.path,
        row.lu_id,
        row.action,
        row.reservation_key,
        row.service_action_key,
        row.pr_type,
        row.outcome,
        row.status,
        row.sense,
        row.command_id,
        row.idempotency_key,
        row.reason,
        row.prev_hash,
        row.hash,
      ],
    );
    await tx.query('UPDATE history_head SET seq = $1, hash = $2 WHERE id = 1', [row.seq, row.hash]);
    return toEntry(row);
  });
}

const VERIFY_PAGE = 1000;

/**
 * Verifies the chain from the first entry to the head: each entry's hash matches its content ('edited'),
 * each links to the one before ('removed' when the predecessor is gone, 'reordered' when it sits elsewhere),
 * and the last entry is the recorded head ('truncated'). An attacker who rewrites every later hash and the
 * head too is not caught here; anchoring the head hash outside the database closes that (a later issue).
 */
export async function verifyHistory(db: Db): Promise<HistoryVerification> {
  let prevHash = GENESIS_HASH;
  let lastSeq = 0;
  let checked = 0;
  for (;;) {
    const page = await db.query<HistoryRow>(
      `SELECT ${COLUMNS} FROM history WHERE seq > $1 ORDER BY seq LIMIT ${VERIFY_PAGE}`,
      [lastSeq],
    );
    for (const row of page.rows) {
      if (entryHash(row) !== row.hash) {
        return {
          ok: false,
          problem: 'edited',
          seq: row.seq,
          checked,
          message: `history entry ${row.seq} was edited: its content does not match its hash`,
        };
      }
      if (row.prev_hash !== prevHash) {
        const elsewhere = await db.query<{ seq: number }>(
          'SELECT seq FROM history WHERE hash = $1',
          [row.prev_hash],
        );
        const at = elsewhere.rows[0]?.seq;
        return at !== undefined
          ? {
              ok: false,
              problem: 'reordered',
              seq: row.seq,
              checked,
              message: `history entry ${row.seq} follows entry ${at} in the chain but is stored after entry ${lastSeq}: entries were reordered`,
            }
          : {
              ok: false,
              problem: 'removed',
              seq: row.seq,
              checked,
              message: `history entry ${row.seq} links to an entry that is missing: an entry before it was removed or rewritten`,
            };
      }
      prevHash = row.hash;
      lastSeq = row.seq;
      checked++;
    }
    if (page.rows.length < VERIFY_PAGE) break;
  }
  const head = await db.query<{ seq: number; hash: string }>(
    'SELECT seq, hash FROM history_head WHERE id = 1',
  );
  const tip = head.rows[0];
  if (!tip || tip.hash !== prevHash) {
    return {
      ok: false,
      problem: 'truncated',
      seq: lastSeq,
      checked,
      message: `history ends at entry ${lastSeq} but its head records entry ${tip?.seq ?? '?'}: entries at the end were removed`,
    };
  }
  return { ok: true, count: checked, headHash: prevHash };
}

/** Builds the history sub-API over `db`. */
export function createPRoutHistory(db: Db): PRoutHistory {
  return {
    append: (entry) => appendHistory(db, entry),
    appendMissing: (entry) => appendHistory(db, entry, true),
    async list(filter = {}) {
      const limit = filter.limit ?? 1000;
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
        throw new StoreInputError('limit', `invalid limit: ${limit} is not in 1..10000`);
      }
      const r = await db.query<HistoryRow>(
        `SELECT ${COLUMNS} FROM history
         WHERE seq > $1 AND ($2::text IS NULL OR lu_id = $2) AND ($3::text IS NULL OR agent_id = $3)
         ORDER BY seq ${filter.newestFirst === true ? 'DESC' : 'ASC'} LIMIT ${limit}`,
        [filter.afterSeq ?? 0, filter.luId ?? null, filter.agentId ?? null],
      );
      return r.rows.map(toEntry);
    },
    verify: () => verifyHistory(db),
    async unrecorded(limit = 100) {
      const r = await db.query<{
        journal_key: string;
        idempotency_key: string;
        request: unknown;
        result: unknown;
        state: 'done' | 'unknown';
        created_at: Date;
      }>(UNRECORDED_SQL, [limit]);
      return r.rows.map((row) => ({
        journalKey: row.journal_key,
        idempotencyKey: row.idempotency_key,
        request: row.request,
        result: row.result,
        state: row.state,
        createdAt: row.created_at,
      }));
    },
  };
}
