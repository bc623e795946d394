import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../store/index.js';

/** Which events a webhook receives (the proto's WebhookFilter, as stored). */
export interface WebhookFilterRecord {
  readonly kinds: readonly string[];
  readonly site: string;
  readonly loaderIds: readonly string[];
  readonly luIds: readonly string[];
  readonly agentIds: readonly string[];
}

/** A webhook as stored (the secret is here for signing; the RPCs never return it). */
export interface WebhookRecord {
  readonly id: string;
  readonly url: string;
  readonly filter: WebhookFilterRecord;
  readonly secret: string;
  readonly secretFingerprint: string;
  readonly description: string;
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly cursor: number;
  readonly delivered: number;
  readonly failedAttempts: number;
  readonly deadLettered: number;
  readonly lastError: string;
  readonly lastDeliveredAt: Date | undefined;
  /** The event being retried (cursor), its attempts so far and when the first was made. */
  readonly retry: { cursor: number; attempts: number; since: Date } | undefined;
}

/** One event given up on. */
export interface DeadLetterRecord {
  readonly cursor: number;
  readonly kind: string;
  readonly attempts: number;
  readonly lastError: string;
  readonly firstAttemptAt: Date;
  readonly deadAt: Date;
}

interface WebhookRow {
  id: string;
  url: string;
  filter: WebhookFilterRecord;
  secret: string;
  secret_fingerprint: string;
  description: string;
  created_by: string;
  created_at: Date;
  cursor: number;
  delivered: number;
  failed_attempts: number;
  dead_lettered: number;
  last_error: string;
  last_delivered_at: Date | null;
  retry_cursor: number | null;
  retry_attempts: number;
  retry_since: Date | null;
}

function recordOf(row: WebhookRow): WebhookRecord {
  return {
    id: row.id,
    url: row.url,
    filter: row.filter,
    secret: row.secret,
    secretFingerprint: row.secret_fingerprint,
    description: row.description,
    createdBy: row.created_by,
    createdAt: row.created_at,
    cursor: row.cursor,
    delivered: row.delivered,
    failedAttempts: row.failed_attempts,
    deadLettered: row.dead_lettered,
    lastError: row.last_error,
    lastDeliveredAt: row.last_delivered_at ?? undefined,
    retry:
      row.retry_cursor === null || row.retry_since === null
        ? undefined
        : { cursor: row.retry_cursor, attempts: row.retry_attempts, since: row.retry_since },
  };
}

/** First 12 hex digits of sha256(secret): says which secret is set without showing it. */
export function secretFingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 12);
}

/** What {@link WebhookStore.add} takes. */
export interface NewWebhook {
  readonly url: string;
  readonly filter: WebhookFilterRecord;
  readonly secret: string;
  readonly description: string;
  readonly createdBy: string;
  /** Deliver events after this cursor. */
  readonly cursor: number;
}

/** A failed attempt, as {@link WebhookStore.failed} records it. */
export interface FailedAttempt {
  readonly cursor: number;
  readonly error: string;
  /** Give up on the event (dead letter) instead of retrying it. */
  readonly deadLetter?: { readonly kind: string } | undefined;
}

/**
 * Webhooks in the store (migration 4): subscriptions, their durable cursor and retry state, the delivery lease
 * and dead letters. Every write of delivery state is conditional on holding the lease, so an instance whose
 * lease was taken over (it stalled past the lease) cannot move a cursor another instance now owns.
 */
export interface WebhookStore {
  add(webhook: NewWebhook): Promise<WebhookRecord>;
  /** Oldest first; one when `id` is given (empty when unknown). */
  list(id?: string): Promise<WebhookRecord[]>;
  /** Removes it and its dead letters; undefined when unknown. */
  remove(id: string): Promise<WebhookRecord | undefined>;
  /** Newest first. */
  deadLetters(id: string, limit: number): Promise<DeadLetterRecord[]>;
  /** Takes or renews the lease for `ms`; false when another owner holds an unexpired one. */
  lease(id: string, owner: string, ms: number): Promise<boolean>;
  /** Gives the lease up (shutdown), so another instance takes over at once. */
  release(id: string, owner: string): Promise<void>;
  /** Moves the cursor past events that matched nothing; false when the lease was lost. */
  skipTo(id: string, owner: string, cursor: number): Promise<boolean>;
  /** The event at `cursor` was delivered; false when the lease was lost. */
  delivered(id: string, owner: string, cursor: number): Promise<boolean>;
  /** An attempt failed (and maybe the event is given up on); false when the lease was lost. */
  failed(id: string, owner: string, attempt: FailedAttempt): Promise<boolean>;
}

const COLUMNS = `id, url, filter, secret, secret_fingerprint, description, created_by, created_at, cursor,
  delivered, failed_attempts, dead_lettered, last_error, last_delivered_at, retry_cursor, retry_attempts, retry_since`;

/** Held lease: the row is ours and not expired (expiry is judged by the database's clock, one clock for all). */
const HELD = 'id = $1 AND lease_owner = $2 AND lease_until > now()';

/** The webhook store over the server's database. */
export function createWebhookStore(db: Db): WebhookStore {
  const changed = async (sql: string, params: unknown[]) =>
    (await db.query(sql, params)).rowCount > 0;
  return {
    async add(w) {
      const id = randomBytes(6).toString('hex');
      const r = await db.query<WebhookRow>(
        `INSERT INTO webhooks (id, url, filter, secret, secret_fingerprint, description, created_by, cursor)
         VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
        [
          id,
          w.url,
          JSON.stringify(w.filter),
          w.secret,
          secretFingerprint(w.secret),
          w.description,
          w.createdBy,
          w.cursor,
        ],
      );
      return recordOf(r.rows[0]!);
    },
    async list(id) {
      const r = await db.query<WebhookRow>(
        `SELECT ${COLUMNS} FROM webhooks ${id === undefined ? '' : 'WHERE id = $1'} ORDER BY created_at, id`,
        id === undefined ? [] : [id],
      );
      return r.rows.map(recordOf);
    },
    async remove(id) {
      const r = await db.query<WebhookRow>(
        `DELETE FROM webhooks WHERE id = $1 RETURNING ${COLUMNS}`,
        [id],
      );
      return r.rows[0] === undefined ? undefined : recordOf(r.rows[0]);
    },
    async deadLetters(id, limit) {
      if (limit <= 0) return [];
      const r = await db.query<{
        cursor: number;
        kind: string;
        attempts: number;
        last_error: string;
        first_attempt_at: Date;
        dead_at: Date;
      }>(
        `SELECT cursor, kind, attempts, last_error, first_attempt_at, dead_at FROM webhook_dead_letters
         WHERE webhook_id = $1 ORDER BY cursor DESC LIMIT $2`,
        [id, limit],
      );
      return r.rows.map((d) => ({
        cursor: d.cursor,
        kind: d.kind,
        attempts: d.attempts,
        lastError: d.last_error,
        firstAttemptAt: d.first_attempt_at,
        deadAt: d.dead_at,
      }));
    },
    lease: (id, owner, ms) =>
      changed(
        `UPDATE webhooks SET lease_owner = $2, lease_until = now() + $3 * interval '1 millisecond'
         WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until <= now())`,
        [id, owner, ms],
      ),
    async release(id, owner) {
      await db.query(
        'UPDATE webhooks SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2',
        [id, owner],
      );
    },
    skipTo: (id, owner, cursor) =>
      changed(
        `UPDATE webhooks SET cursor = $3, retry_cursor = NULL, retry_attempts = 0, retry_since = NULL
         WHERE ${HELD} AND cursor < $3`,
        [id, owner, cursor],
      ).then(async (moved) => moved || (await holds(db, id, owner))),
    delivered: (id, owner, cursor) =>
      changed(
        `UPDATE webhooks SET cursor = $3, delivered = delivered + 1, last_error = '', last_delivered_at = now(),
           retry_cursor = NULL, retry_attempts = 0, retry_since = NULL
         WHERE ${HELD}`,
        [id, owner, cursor],
      ),
    failed: (id, owner, attempt) => recordFailure(db, id, owner, attempt),
  };
}

async function holds(db: Db, id: string, owner: string): Promise<boolean> {
  const r = await db.query(`SELECT 1 FROM webhooks WHERE ${HELD}`, [id, owner]);
  return r.rowCount > 0;
}

/** Counts a failed attempt; a given-up event becomes a dead letter and the cursor moves past it. */
async function recordFailure(
  db: Db,
  id: string,
  owner: string,
  attempt: FailedAttempt,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const r = await tx.query<{ retry_attempts: number; retry_since: Date }>(
      `UPDATE webhooks SET failed_attempts = failed_attempts + 1, last_error = $4,
         retry_attempts = CASE WHEN retry_cursor = $3 THEN retry_attempts + 1 ELSE 1 END,
         retry_since = CASE WHEN retry_cursor = $3 THEN retry_since ELSE now() END,
         retry_cursor = $3
       WHERE ${HELD} RETURNING retry_attempts, retry_since`,
      [id, owner, attempt.cursor, attempt.error],
    );
    const row = r.rows[0];
    if (row === undefined) return false;
    if (attempt.deadLetter === undefined) return true;
    await tx.query(
      `INSERT INTO webhook_dead_letters (webhook_id, cursor, kind, attempts, last_error, first_attempt_at)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (webhook_id, cursor) DO NOTHING`,
      [
        id,
        attempt.cursor,
        attempt.deadLetter.kind,
        row.retry_attempts,
        attempt.error,
        row.retry_since,
      ],
    );
    await tx.query(
      `UPDATE webhooks SET cursor = $2, dead_lettered = dead_lettered + 1, retry_cursor = NULL,
         retry_attempts = 0, retry_since = NULL WHERE id = $1`,
      [id, attempt.cursor],
    );
    return true;
  });
}
